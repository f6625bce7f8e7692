package network

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Annotations the CLI sets on a container whose spec carries the hooks.
const (
	AnnotationNamespace = "berth.dev/namespace" // containerd namespace of the container
	AnnotationNetwork   = "berth.dev/network"   // network mode: "bridge" (only bridge uses hooks)
	AnnotationPorts     = "berth.dev/ports"     // JSON []PortMapping
)

// Hook phases, as runc names them in the spec and as RunHook takes them.
const (
	PhaseCreateRuntime = "createRuntime"
	PhasePostStop      = "postStop"
)

// Flags of `berth internal oci-hook <phase>`, which rebuild the Config of
// the Manager that set the hooks.
const (
	FlagConfDir  = "cni-conf-dir"
	FlagBinDir   = "cni-bin-dir" // directories joined by commas
	FlagStateDir = "cni-state-dir"
)

// HookTimeout bounds each hook, in seconds. ADD and DEL take well under a
// second; iptables may wait for its lock behind other users.
const HookTimeout = 60

// hookPath is PATH for the hooks, whose environment is only what the
// spec gives: the plugins run iptables and friends by name.
const hookPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Hooks returns the createRuntime and postStop hooks that run
// `<berthPath> internal oci-hook <phase>` with the flags that rebuild cfg.
// berthPath must be absolute: runc does not search PATH.
func Hooks(berthPath string, cfg Config) *specs.Hooks {
	cfg = cfg.WithDefaults()
	hook := func(phase string) specs.Hook {
		timeout := HookTimeout
		return specs.Hook{
			Path: berthPath,
			Args: []string{
				berthPath, "internal", "oci-hook", phase,
				"--" + FlagConfDir + "=" + cfg.ConfDir,
				"--" + FlagBinDir + "=" + strings.Join(cfg.BinDirs, ","),
				"--" + FlagStateDir + "=" + cfg.StateDir,
			},
			Env:     []string{hookPath},
			Timeout: &timeout,
		}
	}
	return &specs.Hooks{
		CreateRuntime: []specs.Hook{hook(PhaseCreateRuntime)},
		Poststop:      []specs.Hook{hook(PhasePostStop)},
	}
}

// RunHook handles one hook invocation: createRuntime attaches the
// container (Setup, netns /proc/<pid>/ns/net, ports from
// AnnotationPorts), postStop detaches it (Teardown). state is the OCI
// state JSON runc writes on the hook's stdin. A container whose
// AnnotationNetwork is "host" or "none" needs nothing: RunHook returns nil.
func RunHook(ctx context.Context, cfg Config, phase string, state io.Reader) error {
	if phase != PhaseCreateRuntime && phase != PhasePostStop {
		return fmt.Errorf("OCI hook phase %q: want %s or %s: %w", phase, PhaseCreateRuntime, PhasePostStop, errdefs.ErrInvalidArgument)
	}
	st, err := readState(state)
	if err != nil {
		return fmt.Errorf("OCI hook %s: %w", phase, err)
	}
	where := fmt.Sprintf("OCI hook %s of container %q", phase, st.ID)
	switch mode := st.Annotations[AnnotationNetwork]; mode {
	case "", "bridge":
	case "host", "none":
		return nil
	default:
		return fmt.Errorf("%s: network mode %q (annotation %s): only bridge uses hooks: %w", where, mode, AnnotationNetwork, errdefs.ErrInvalidArgument)
	}
	ns := st.Annotations[AnnotationNamespace]
	if ns == "" {
		return fmt.Errorf("%s: no annotation %s naming its namespace: %w", where, AnnotationNamespace, errdefs.ErrInvalidArgument)
	}
	if os.Getenv("PATH") == "" {
		// A spec written without Hooks' Env: the plugins need PATH.
		os.Setenv("PATH", strings.TrimPrefix(hookPath, "PATH="))
	}
	m, err := New(cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if phase == PhasePostStop {
		return m.Teardown(ctx, ns, st.ID)
	}
	if st.Pid <= 0 {
		return fmt.Errorf("%s: state has no pid: %w", where, errdefs.ErrInvalidArgument)
	}
	var ports []PortMapping
	if a := st.Annotations[AnnotationPorts]; a != "" {
		if err := json.Unmarshal([]byte(a), &ports); err != nil {
			return fmt.Errorf("%s: annotation %s: %w: %w", where, AnnotationPorts, err, errdefs.ErrInvalidArgument)
		}
	}
	_, err = m.Setup(ctx, ns, st.ID, fmt.Sprintf("/proc/%d/ns/net", st.Pid), ports)
	return err
}

// readState decodes the OCI state runc writes on a hook's stdin.
func readState(r io.Reader) (*specs.State, error) {
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read the OCI state: %w", err)
	}
	var st specs.State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("decode the OCI state: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	if st.ID == "" {
		return nil, fmt.Errorf("the OCI state has no container id: %w", errdefs.ErrInvalidArgument)
	}
	return &st, nil
}
