package oci

import (
	"context"
	"fmt"
	"path"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/identifiers"
	"github.com/berth-dev/berth/namespaces"
)

// SpecOpt changes a spec being built.
type SpecOpt func(ctx context.Context, s *specs.Spec) error

const (
	// DefaultPath is the PATH of a container whose image sets none.
	DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// defaultRootfs is the bundle-relative root runc expects by convention.
	defaultRootfs = "rootfs"
	rwm           = "rwm"
)

// GenerateSpec returns the default spec for container id in namespace ns
// (cgroupsPath "/<ns>/<id>", as containerd does), with opts applied in
// order. The package comment lists the defaults. ns and id must be valid
// identifiers: both are path elements of the cgroup.
func GenerateSpec(ctx context.Context, ns, id string, opts ...SpecOpt) (*specs.Spec, error) {
	if err := namespaces.Validate(ns); err != nil {
		return nil, fmt.Errorf("spec for container %q: namespace: %w", id, err)
	}
	if err := identifiers.Validate(id); err != nil {
		return nil, fmt.Errorf("spec for container in namespace %q: container id: %w", ns, err)
	}
	s := defaultSpec(ns, id)
	g := &generation{seccomp: defaultSeccomp}
	ctx = context.WithValue(ctx, generationKey{}, g)
	for _, o := range opts {
		if err := o(ctx, s); err != nil {
			return nil, err
		}
	}
	if err := g.finish(s); err != nil {
		return nil, fmt.Errorf("spec for container %q in namespace %q: %w", id, ns, err)
	}
	return s, nil
}

// generation is what GenerateSpec settles after every option has run. The
// options that choose a seccomp profile record the choice here, so that
// the profile is computed against the final capabilities.
type generation struct {
	// seccomp computes the profile from the finished spec; nil means
	// unconfined.
	seccomp seccompSource
}

type generationKey struct{}

// generationFrom returns the generation GenerateSpec is running, or nil
// when an option is applied to a spec on its own.
func generationFrom(ctx context.Context) *generation {
	g, _ := ctx.Value(generationKey{}).(*generation)
	return g
}

func (g *generation) finish(s *specs.Spec) error {
	return applySeccomp(s, g.seccomp)
}

// SpecVersion is the ociVersion berth writes: 1.0.2-dev, as containerd
// 1.6 and runc 1.1 do, because crun 1.8 refuses any version but 1.0.x
// ("unknown version specified") and the fields berth sets are all in 1.0.
const SpecVersion = "1.0.2-dev"

// defaultSpec is the spec before any option: everything but seccomp,
// which GenerateSpec adds last.
func defaultSpec(ns, id string) *specs.Spec {
	return &specs.Spec{
		Version: SpecVersion,
		Root:    &specs.Root{Path: defaultRootfs},
		Process: &specs.Process{
			Env:  []string{"PATH=" + DefaultPath},
			Cwd:  "/",
			User: specs.User{UID: 0, GID: 0},
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  defaultCapabilities(),
				Effective: defaultCapabilities(),
				Permitted: defaultCapabilities(),
			},
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
		},
		Mounts: defaultMounts(),
		Linux: &specs.Linux{
			CgroupsPath:   path.Join("/", ns, id),
			Namespaces:    defaultNamespaces(),
			MaskedPaths:   defaultMaskedPaths(),
			ReadonlyPaths: defaultReadonlyPaths(),
			Resources:     &specs.LinuxResources{Devices: defaultDeviceRules()},
		},
	}
}

// defaultCapabilities is docker's and containerd 1.6's default set. A new
// slice each call: the three sets must not share a backing array.
func defaultCapabilities() []string {
	return []string{
		"CAP_CHOWN",
		"CAP_DAC_OVERRIDE",
		"CAP_FSETID",
		"CAP_FOWNER",
		"CAP_MKNOD",
		"CAP_NET_RAW",
		"CAP_SETGID",
		"CAP_SETUID",
		"CAP_SETFCAP",
		"CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE",
		"CAP_SYS_CHROOT",
		"CAP_KILL",
		"CAP_AUDIT_WRITE",
	}
}

func defaultNamespaces() []specs.LinuxNamespace {
	return []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.IPCNamespace},
		{Type: specs.UTSNamespace},
		{Type: specs.MountNamespace},
		{Type: specs.NetworkNamespace},
	}
}

func defaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc",
			Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs",
			Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts",
			Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm",
			Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue",
			Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs",
			Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup",
			Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
}

// defaultMaskedPaths hide host information (kernel memory, keys, timers,
// firmware) that /proc and /sys would otherwise show the container.
func defaultMaskedPaths() []string {
	return []string{
		"/proc/acpi",
		"/proc/asound",
		"/proc/kcore",
		"/proc/keys",
		"/proc/latency_stats",
		"/proc/timer_list",
		"/proc/timer_stats",
		"/proc/sched_debug",
		"/proc/scsi",
		"/sys/firmware",
		"/sys/devices/virtual/powercap",
	}
}

// defaultReadonlyPaths are the /proc files that would change the host
// kernel's settings if written.
func defaultReadonlyPaths() []string {
	return []string{
		"/proc/bus",
		"/proc/fs",
		"/proc/irq",
		"/proc/sys",
		"/proc/sysrq-trigger",
	}
}

// defaultDeviceRules deny every device, then allow the character devices
// every program expects. runc creates the nodes themselves.
func defaultDeviceRules() []specs.LinuxDeviceCgroup {
	allow := func(major, minor int64) specs.LinuxDeviceCgroup {
		r := specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &major, Access: rwm}
		if minor >= 0 {
			r.Minor = &minor
		}
		return r
	}
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: rwm},
		allow(1, 3),    // /dev/null
		allow(1, 8),    // /dev/random
		allow(1, 7),    // /dev/full
		allow(5, 0),    // /dev/tty
		allow(1, 5),    // /dev/zero
		allow(1, 9),    // /dev/urandom
		allow(5, 1),    // /dev/console
		allow(136, -1), // /dev/pts/*
		allow(5, 2),    // /dev/ptmx
	}
}

// ensureProcess, ensureLinux and ensureResources let options work on a
// spec GenerateSpec did not make.
func ensureProcess(s *specs.Spec) *specs.Process {
	if s.Process == nil {
		s.Process = &specs.Process{}
	}
	return s.Process
}

func ensureLinux(s *specs.Spec) *specs.Linux {
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	return s.Linux
}

func ensureResources(s *specs.Spec) *specs.LinuxResources {
	l := ensureLinux(s)
	if l.Resources == nil {
		l.Resources = &specs.LinuxResources{}
	}
	return l.Resources
}

func ensureCapabilities(s *specs.Spec) *specs.LinuxCapabilities {
	p := ensureProcess(s)
	if p.Capabilities == nil {
		p.Capabilities = &specs.LinuxCapabilities{}
	}
	return p.Capabilities
}
