package oci

import (
	"os"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestWithNamespacePath(t *testing.T) {
	s := generate(t,
		WithNamespacePath(specs.NetworkNamespace, "/proc/42/ns/net"),
		WithNamespacePath(specs.CgroupNamespace, "/proc/42/ns/cgroup"))
	paths := map[specs.LinuxNamespaceType]string{}
	for _, ns := range s.Linux.Namespaces {
		paths[ns.Type] = ns.Path
	}
	if paths[specs.NetworkNamespace] != "/proc/42/ns/net" || paths[specs.CgroupNamespace] != "/proc/42/ns/cgroup" || paths[specs.PIDNamespace] != "" {
		t.Errorf("namespaces: %v", s.Linux.Namespaces)
	}
	if n := len(s.Linux.Namespaces); n != 6 {
		t.Errorf("%d namespaces, want the 5 defaults and cgroup", n)
	}
	_, err := GenerateSpec(t.Context(), "default", "c1", WithNamespacePath(specs.IPCNamespace, "proc/1/ns/ipc"))
	wantErr(t, err, errdefs.ErrInvalidArgument, "not absolute")
}

func TestWithSysctlsAndCgroup(t *testing.T) {
	s := generate(t, WithSysctls(map[string]string{"net.ipv4.ip_forward": "1"}), WithSysctls(map[string]string{"kernel.shmmax": "1000"}),
		WithCgroupsPath("/kubepods/pod1/c1"))
	if s.Linux.Sysctl["net.ipv4.ip_forward"] != "1" || s.Linux.Sysctl["kernel.shmmax"] != "1000" || s.Linux.CgroupsPath != "/kubepods/pod1/c1" {
		t.Errorf("sysctls %v, cgroup %q", s.Linux.Sysctl, s.Linux.CgroupsPath)
	}
	_, err := GenerateSpec(t.Context(), "default", "c1", WithSysctls(map[string]string{"bad name": "1"}))
	wantErr(t, err, errdefs.ErrInvalidArgument, "bad name")
}

func TestWithResources(t *testing.T) {
	limit, quota, period := int64(64<<20), int64(20000), uint64(100000)
	s := generate(t, WithResources(&specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &limit},
		CPU:    &specs.LinuxCPU{Quota: &quota, Period: &period, Cpus: "0"},
	}), WithResources(nil))
	r := s.Linux.Resources
	if *r.Memory.Limit != limit || *r.CPU.Quota != quota || *r.CPU.Period != period || r.CPU.Cpus != "0" {
		t.Errorf("resources: %+v", r)
	}
	if len(r.Devices) == 0 || r.Devices[0].Allow {
		t.Errorf("the default device rules are gone: %+v", r.Devices)
	}
}

func TestWithPathsAndGIDs(t *testing.T) {
	s := generate(t, WithMaskedPaths([]string{"/proc/x"}), WithReadonlyPaths(nil),
		WithUser(specs.User{UID: 1, GID: 2, AdditionalGids: []uint32{2}}), WithAdditionalGIDs(5, 2, 6))
	if !slices.Equal(s.Linux.MaskedPaths, []string{"/proc/x"}) || len(s.Linux.ReadonlyPaths) != 0 {
		t.Errorf("masked %v, read-only %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if !slices.Equal(s.Process.User.AdditionalGids, []uint32{2, 5, 6}) {
		t.Errorf("additional gids %v", s.Process.User.AdditionalGids)
	}
}

func TestWithHostDevice(t *testing.T) {
	if _, err := os.Stat("/dev/null"); err != nil {
		t.Fatal(err)
	}
	s := generate(t, WithHostDevice("/dev/null", "/dev/mynull", "rw"))
	i := slices.IndexFunc(s.Linux.Devices, func(d specs.LinuxDevice) bool { return d.Path == "/dev/mynull" })
	if i < 0 || s.Linux.Devices[i].Type != "c" || s.Linux.Devices[i].Major != 1 || s.Linux.Devices[i].Minor != 3 {
		t.Fatalf("devices: %+v", s.Linux.Devices)
	}
	last := s.Linux.Resources.Devices[len(s.Linux.Resources.Devices)-1]
	if !last.Allow || last.Access != "rw" || *last.Major != 1 || *last.Minor != 3 {
		t.Errorf("cgroup rule: %+v", last)
	}
	_, err := GenerateSpec(t.Context(), "default", "c1", WithHostDevice("/etc/hostname", "", ""))
	wantErr(t, err, errdefs.ErrInvalidArgument, "/etc/hostname", "not a device")
	_, err = GenerateSpec(t.Context(), "default", "c1", WithHostDevice("/dev/nosuchdevice", "", ""))
	wantErr(t, err, errdefs.ErrNotFound, "/dev/nosuchdevice")
	_, err = GenerateSpec(t.Context(), "default", "c1", WithHostDevice("/dev/null", "", "rwx"))
	wantErr(t, err, errdefs.ErrInvalidArgument, "rwx")
}
