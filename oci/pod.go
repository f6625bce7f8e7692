package oci

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The options of this file are what a Kubernetes pod needs beyond a plain
// container: joining the namespaces of the pod's sandbox, kernel
// parameters, a cgroup under the pod's, resource limits as the kubelet
// computes them, devices, and the masked and read-only path lists the
// kubelet may replace.

// WithNamespacePath makes the container join the namespace of type t at
// nsPath (typically /proc/<pid>/ns/<type> of the pod's sandbox process),
// adding the namespace when the spec has none of that type.
func WithNamespacePath(t specs.LinuxNamespaceType, nsPath string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if !path.IsAbs(nsPath) {
			return fmt.Errorf("%s namespace path %q is not absolute: %w", t, nsPath, errdefs.ErrInvalidArgument)
		}
		l := ensureLinux(s)
		for i := range l.Namespaces {
			if l.Namespaces[i].Type == t {
				l.Namespaces[i].Path = nsPath
				return nil
			}
		}
		l.Namespaces = append(l.Namespaces, specs.LinuxNamespace{Type: t, Path: nsPath})
		return nil
	}
}

// WithSysctls sets kernel parameters of the container's namespaces
// (net.*, kernel.shm*, ...), replacing those of the same name. runc
// refuses a parameter the container's namespaces do not isolate.
func WithSysctls(sysctls map[string]string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if len(sysctls) == 0 {
			return nil
		}
		l := ensureLinux(s)
		if l.Sysctl == nil {
			l.Sysctl = map[string]string{}
		}
		for k, v := range sysctls {
			if k == "" || strings.ContainsAny(k, " \t\n=") {
				return fmt.Errorf("sysctl %q: not a parameter name: %w", k, errdefs.ErrInvalidArgument)
			}
			l.Sysctl[k] = v
		}
		return nil
	}
}

// WithCgroupsPath sets the container's cgroup: a path under the cgroup
// roots ("/kubepods/pod<uid>/<id>"), or a systemd slice triple
// ("kubepods-pod<uid>.slice:cri-berth:<id>") for runc's systemd driver.
func WithCgroupsPath(p string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		ensureLinux(s).CgroupsPath = p
		return nil
	}
}

// WithResources applies limits: each of CPU, memory, pids, huge pages
// and unified (cgroup v2) that r sets replaces the spec's; the device
// rules stay the spec's. A nil r changes nothing.
func WithResources(r *specs.LinuxResources) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if r == nil {
			return nil
		}
		res := ensureResources(s)
		if r.CPU != nil {
			res.CPU = r.CPU
		}
		if r.Memory != nil {
			res.Memory = r.Memory
		}
		if r.Pids != nil {
			res.Pids = r.Pids
		}
		if len(r.HugepageLimits) > 0 {
			res.HugepageLimits = slices.Clone(r.HugepageLimits)
		}
		if len(r.Unified) > 0 {
			res.Unified = maps.Clone(r.Unified)
		}
		return nil
	}
}

// WithMaskedPaths replaces the masked paths (nil: none).
func WithMaskedPaths(paths []string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		ensureLinux(s).MaskedPaths = slices.Clone(paths)
		return nil
	}
}

// WithReadonlyPaths replaces the read-only paths (nil: none).
func WithReadonlyPaths(paths []string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		ensureLinux(s).ReadonlyPaths = slices.Clone(paths)
		return nil
	}
}

// WithAdditionalGIDs adds supplementary groups to the process's user,
// after those it has.
func WithAdditionalGIDs(gids ...uint32) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		u := &ensureProcess(s).User
		for _, g := range gids {
			if !slices.Contains(u.AdditionalGids, g) {
				u.AdditionalGids = append(u.AdditionalGids, g)
			}
		}
		return nil
	}
}

// WithHostDevice gives the container the host's device hostPath at
// ctrPath (hostPath's own path when empty), with cgroup access
// permissions ("rwm" or a subset; "" is "rwm"). A directory gives every
// device under it, at the same place under ctrPath. A path that is no
// device fails, naming it.
func WithHostDevice(hostPath, ctrPath, permissions string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if permissions == "" {
			permissions = rwm
		}
		if strings.Trim(permissions, "rwm") != "" {
			return fmt.Errorf("device %s: permissions %q: want letters of rwm: %w", hostPath, permissions, errdefs.ErrInvalidArgument)
		}
		if ctrPath == "" {
			ctrPath = hostPath
		}
		devices, err := devicesAt(hostPath, ctrPath)
		if err != nil {
			return err
		}
		l := ensureLinux(s)
		res := ensureResources(s)
		for _, d := range devices {
			l.Devices = slices.DeleteFunc(l.Devices, func(h specs.LinuxDevice) bool { return h.Path == d.Path })
			l.Devices = append(l.Devices, d)
			major, minor := d.Major, d.Minor
			res.Devices = append(res.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: d.Type, Major: &major, Minor: &minor, Access: permissions})
		}
		return nil
	}
}

// devicesAt describes the device at hostPath (symbolic links followed),
// or each device under it when it is a directory.
func devicesAt(hostPath, ctrPath string) ([]specs.LinuxDevice, error) {
	resolved, err := filepath.EvalSymlinks(hostPath)
	if err != nil {
		return nil, fmt.Errorf("device %s: %w: %w", hostPath, err, errdefs.ErrNotFound)
	}
	st, err := os.Stat(resolved)
	if err != nil {
		return nil, fmt.Errorf("device %s: %w: %w", hostPath, err, errdefs.ErrNotFound)
	}
	if !st.IsDir() {
		d, err := deviceAt(resolved, ctrPath)
		if err != nil {
			return nil, fmt.Errorf("device %s: not a device node: %w", hostPath, errdefs.ErrInvalidArgument)
		}
		return []specs.LinuxDevice{d}, nil
	}
	all, err := hostDevices(resolved)
	if err != nil {
		return nil, fmt.Errorf("devices under %s: %w", hostPath, err)
	}
	for i := range all {
		rel := strings.TrimPrefix(all[i].Path, "/dev")
		all[i].Path = path.Join(ctrPath, rel)
	}
	return all, nil
}
