package oci

import (
	"context"
	"fmt"
	"maps"
	"math"
	"os"
	"path"
	"slices"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// hostNameMax is the kernel's HOST_NAME_MAX.
const hostNameMax = 64

// WithHostname sets the container's hostname. The default spec has none,
// as containerd's, so the container keeps the name its UTS namespace
// copied from the host. nerdctl names a container after the first 12
// characters of its id; a caller wanting that passes it here.
func WithHostname(name string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if len(name) > hostNameMax {
			return fmt.Errorf("hostname %q is %d bytes, longer than the kernel's %d: %w", name, len(name), hostNameMax, errdefs.ErrInvalidArgument)
		}
		s.Hostname = name
		return nil
	}
}

// hostNetworkFiles are bound from the host into a container sharing the
// host's network namespace, as nerdctl --network host does: without them
// the image's own files would name the wrong host and resolver.
var hostNetworkFiles = []string{"/etc/hosts", "/etc/resolv.conf"}

// WithHostNamespace makes the container share the host's namespace of type
// t, by dropping it from the spec. Sharing the network namespace also binds
// the host's /etc/hosts and /etc/resolv.conf read-only, those of them the
// host has. The mount namespace cannot be shared: runc needs its own to
// set up the root filesystem.
func WithHostNamespace(t specs.LinuxNamespaceType) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		switch t {
		case specs.MountNamespace:
			return fmt.Errorf("host %s namespace: a container always has its own, to set up its root filesystem: %w", t, errdefs.ErrInvalidArgument)
		case specs.PIDNamespace, specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace,
			specs.UserNamespace, specs.CgroupNamespace, specs.TimeNamespace:
		default:
			return fmt.Errorf("host namespace %q: unknown namespace type: %w", t, errdefs.ErrInvalidArgument)
		}
		l := ensureLinux(s)
		l.Namespaces = slices.DeleteFunc(l.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t })
		if t != specs.NetworkNamespace {
			return nil
		}
		for _, f := range hostNetworkFiles {
			if _, err := os.Stat(f); err != nil {
				continue // a host without the file has nothing to share
			}
			addMount(s, specs.Mount{Destination: f, Type: "bind", Source: f, Options: []string{"rbind", "ro"}})
		}
		return nil
	}
}

// WithNetNSPath makes the container join the network namespace at path,
// typically one a CNI plugin has set up under /var/run/netns.
func WithNetNSPath(nsPath string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if !path.IsAbs(nsPath) {
			return fmt.Errorf("network namespace path %q is not absolute: %w", nsPath, errdefs.ErrInvalidArgument)
		}
		l := ensureLinux(s)
		for i := range l.Namespaces {
			if l.Namespaces[i].Type == specs.NetworkNamespace {
				l.Namespaces[i].Path = nsPath
				return nil
			}
		}
		l.Namespaces = append(l.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: nsPath})
		return nil
	}
}

// WithMounts adds mounts after the spec's. A mount whose destination is
// already mounted replaces that mount in place, so that `-v x:/dev/shm`
// replaces the default /dev/shm instead of stacking on it.
func WithMounts(mounts ...specs.Mount) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		for _, m := range mounts {
			if !path.IsAbs(m.Destination) {
				return fmt.Errorf("mount of %q on %q: destination is not an absolute path: %w", m.Source, m.Destination, errdefs.ErrInvalidArgument)
			}
			m.Destination = path.Clean(m.Destination)
			m.Options = slices.Clone(m.Options)
			addMount(s, m)
		}
		return nil
	}
}

func addMount(s *specs.Spec, m specs.Mount) {
	for i := range s.Mounts {
		if path.Clean(s.Mounts[i].Destination) == m.Destination {
			s.Mounts[i] = m
			return
		}
	}
	s.Mounts = append(s.Mounts, m)
}

// minMemoryLimit is docker's floor: below it runc and the container's
// first process barely start.
const minMemoryLimit = 6 << 20

// WithMemoryLimit limits the container's memory to bytes, at least 6 MiB.
func WithMemoryLimit(bytes int64) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if bytes < minMemoryLimit {
			return fmt.Errorf("memory limit %d bytes: the minimum is %d (6 MiB): %w", bytes, minMemoryLimit, errdefs.ErrInvalidArgument)
		}
		r := ensureResources(s)
		if r.Memory == nil {
			r.Memory = &specs.LinuxMemory{}
		}
		r.Memory.Limit = &bytes
		return nil
	}
}

// cfsPeriod is the CFS period docker and containerd use, in microseconds.
const cfsPeriod = 100000

// WithCPUs limits the container to cpus CPUs' worth of time, as docker's
// --cpus does: a CFS quota of cpus × 100000µs every 100000µs. The kernel's
// smallest quota, 1ms, makes 0.01 the minimum. More CPUs than the host has
// are not refused: the limit then never bites.
func WithCPUs(cpus float64) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		quota := math.Round(cpus * cfsPeriod)
		if math.IsNaN(cpus) || quota < 1000 || quota > math.MaxInt64/2 {
			return fmt.Errorf("cpus %v: must be a number of CPUs of at least 0.01: %w", cpus, errdefs.ErrInvalidArgument)
		}
		r := ensureResources(s)
		if r.CPU == nil {
			r.CPU = &specs.LinuxCPU{}
		}
		q, p := int64(quota), uint64(cfsPeriod)
		r.CPU.Quota, r.CPU.Period = &q, &p
		return nil
	}
}

// WithAnnotations adds annotations, replacing those of the same key.
func WithAnnotations(annotations map[string]string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if len(annotations) == 0 {
			return nil
		}
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		maps.Copy(s.Annotations, annotations)
		return nil
	}
}

// WithHooks adds h's hooks after those of the same phase the spec has.
func WithHooks(h *specs.Hooks) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if h == nil {
			return nil
		}
		if s.Hooks == nil {
			s.Hooks = &specs.Hooks{}
		}
		// Prestart is deprecated, but runc still runs it: a caller's hooks are kept.
		s.Hooks.Prestart = append(s.Hooks.Prestart, h.Prestart...)
		s.Hooks.CreateRuntime = append(s.Hooks.CreateRuntime, h.CreateRuntime...)
		s.Hooks.CreateContainer = append(s.Hooks.CreateContainer, h.CreateContainer...)
		s.Hooks.StartContainer = append(s.Hooks.StartContainer, h.StartContainer...)
		s.Hooks.Poststart = append(s.Hooks.Poststart, h.Poststart...)
		s.Hooks.Poststop = append(s.Hooks.Poststop, h.Poststop...)
		return nil
	}
}

// WithRootfs sets the root filesystem: a path relative to the bundle
// ("rootfs" by default) or absolute, mounted read-only when readonly.
func WithRootfs(rootfs string, readonly bool) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if rootfs == "" {
			return fmt.Errorf("rootfs: empty path: %w", errdefs.ErrInvalidArgument)
		}
		s.Root = &specs.Root{Path: rootfs, Readonly: readonly}
		return nil
	}
}
