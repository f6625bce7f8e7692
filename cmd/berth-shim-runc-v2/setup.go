package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berth-dev/berth/runtime/shim/bootstrap"
	"github.com/berth-dev/berth/runtime/shim/cgroupv1"
	"github.com/berth-dev/berth/runtime/shim/runtimeopts"
	"github.com/containerd/cgroups/v3"
)

// groupAnnotations put several tasks in one shim: the first present names
// the group, as with containerd's runc shim. Order matters.
var groupAnnotations = []string{
	"io.containerd.runc.v2.group",
	"io.kubernetes.cri.sandbox-id",
}

// group is the task's shim group: its group annotation, else its own id.
func group(bundle, id string) string {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return id
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if json.Unmarshal(data, &spec) != nil {
		return id
	}
	for _, a := range groupAnnotations {
		if g, ok := spec.Annotations[a]; ok && g != "" {
			return g
		}
	}
	return id
}

// joinShimCgroup moves the server into the runtime options' ShimCgroup, if
// any: runc's option, or shim_cgroup in gVisor's options file (cgroup v1
// hosts; on cgroup v2 the option is not supported yet).
func joinShimCgroup(p *bootstrap.Params, pid int) error {
	var opts runtimeopts.Config
	for _, a := range p.Options {
		cfg, err := runtimeopts.Decode(a)
		if err != nil {
			return fmt.Errorf("runtime options: %w", err)
		}
		if cfg.ShimCgroup != "" {
			opts = *cfg
		}
	}
	if opts.ShimCgroup == "" {
		return nil
	}
	if mode := cgroups.Mode(); mode != cgroups.Legacy && mode != cgroups.Hybrid {
		return fmt.Errorf("shim cgroup %s: only cgroup v1 hosts are supported", opts.ShimCgroup)
	}
	cg, err := cgroupv1.Static(opts.ShimCgroup)
	if err != nil {
		return fmt.Errorf("load shim cgroup %s: %w", opts.ShimCgroup, err)
	}
	if err := cg.AddProc(pid); err != nil {
		return fmt.Errorf("join shim cgroup %s: %w", opts.ShimCgroup, err)
	}
	return nil
}
