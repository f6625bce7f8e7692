package oci

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestWithHostNamespaceNetwork(t *testing.T) {
	var want []specs.Mount
	for _, f := range []string{"/etc/hosts", "/etc/resolv.conf"} {
		if _, err := os.Stat(f); err == nil {
			want = append(want, specs.Mount{Destination: f, Type: "bind", Source: f, Options: []string{"rbind", "ro"}})
		}
	}
	if len(want) == 0 {
		t.Fatal("this host has neither /etc/hosts nor /etc/resolv.conf to share")
	}
	s := generate(t, WithHostNamespace(specs.NetworkNamespace))
	if diff := cmp.Diff([]specs.LinuxNamespaceType{"pid", "ipc", "uts", "mount"}, namespaceTypes(s)); diff != "" {
		t.Errorf("namespaces (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, s.Mounts[len(s.Mounts)-len(want):]); diff != "" {
		t.Errorf("host files (-want +got):\n%s", diff)
	}

	// A file the host lacks is not bound; applying twice binds once.
	present := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(present, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	orig := hostNetworkFiles
	t.Cleanup(func() { hostNetworkFiles = orig })
	hostNetworkFiles = []string{present, filepath.Join(t.TempDir(), "missing")}
	s = generate(t, WithHostNamespace(specs.NetworkNamespace), WithHostNamespace(specs.NetworkNamespace))
	if diff := cmp.Diff([]string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup", present}, mountPoints(s)); diff != "" {
		t.Errorf("mount points (-want +got):\n%s", diff)
	}
}

func TestWithHostNamespace(t *testing.T) {
	s := generate(t, WithHostNamespace(specs.PIDNamespace), WithHostNamespace(specs.IPCNamespace), WithHostNamespace(specs.UserNamespace))
	if diff := cmp.Diff([]specs.LinuxNamespaceType{"uts", "mount", "network"}, namespaceTypes(s)); diff != "" {
		t.Errorf("namespaces (-want +got):\n%s", diff)
	}
	if len(s.Mounts) != len(defaultMounts()) {
		t.Errorf("mounts %v: only the network namespace binds host files", mountPoints(s))
	}
	for _, tc := range []struct {
		t    specs.LinuxNamespaceType
		says string
	}{
		{specs.MountNamespace, "always has its own"},
		{"netns", "unknown namespace type"},
	} {
		_, err := GenerateSpec(context.Background(), "default", "c1", WithHostNamespace(tc.t))
		wantErr(t, err, errdefs.ErrInvalidArgument, tc.says)
	}
}

func TestWithNetNSPath(t *testing.T) {
	s := generate(t, WithNetNSPath("/var/run/netns/cni-1"))
	want := []specs.LinuxNamespace{{Type: "pid"}, {Type: "ipc"}, {Type: "uts"}, {Type: "mount"}, {Type: "network", Path: "/var/run/netns/cni-1"}}
	if diff := cmp.Diff(want, s.Linux.Namespaces); diff != "" {
		t.Errorf("namespaces (-want +got):\n%s", diff)
	}
	// After sharing the host's, joining a path brings a network namespace back.
	s = generate(t, WithHostNamespace(specs.NetworkNamespace), WithNetNSPath("/run/netns/x"))
	if n := s.Linux.Namespaces[len(s.Linux.Namespaces)-1]; n != (specs.LinuxNamespace{Type: "network", Path: "/run/netns/x"}) {
		t.Errorf("last namespace %+v", n)
	}
	_, err := GenerateSpec(context.Background(), "default", "c1", WithNetNSPath("netns/x"))
	wantErr(t, err, errdefs.ErrInvalidArgument, `"netns/x"`)
}

func TestWithMounts(t *testing.T) {
	data := specs.Mount{Destination: "/data", Type: "bind", Source: "/srv/data", Options: []string{"rbind", "ro"}}
	shm := specs.Mount{Destination: "/dev/shm/", Type: "tmpfs", Source: "shm", Options: []string{"size=1g"}}
	s := generate(t, WithMounts(data, shm), WithMounts(specs.Mount{Destination: "/data", Type: "bind", Source: "/srv/other"}))
	want := []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup", "/data"}
	if diff := cmp.Diff(want, mountPoints(s)); diff != "" {
		t.Errorf("mount points (-want +got):\n%s", diff)
	}
	if m, _ := mountAt(s, "/dev/shm"); !slices.Equal(m.Options, []string{"size=1g"}) {
		t.Errorf("/dev/shm %+v, want the caller's", m)
	}
	if m, _ := mountAt(s, "/data"); m.Source != "/srv/other" {
		t.Errorf("/data %+v, want the last one given", m)
	}
	_, err := GenerateSpec(context.Background(), "default", "c1", WithMounts(specs.Mount{Destination: "data"}))
	wantErr(t, err, errdefs.ErrInvalidArgument, `"data"`, "absolute")
}

func TestResourceOptions(t *testing.T) {
	s := generate(t, WithMemoryLimit(512<<20), WithCPUs(1.5))
	r := s.Linux.Resources
	if r.Memory == nil || *r.Memory.Limit != 512<<20 {
		t.Errorf("memory %+v", r.Memory)
	}
	if r.CPU == nil || *r.CPU.Quota != 150000 || *r.CPU.Period != 100000 {
		t.Errorf("cpu %+v", r.CPU)
	}
	if len(r.Devices) != len(defaultDeviceRules()) {
		t.Errorf("device rules lost: %+v", r.Devices)
	}
	if s := generate(t, WithCPUs(0.01)); *s.Linux.Resources.CPU.Quota != 1000 {
		t.Errorf("0.01 cpus: quota %d", *s.Linux.Resources.CPU.Quota)
	}
	for _, tc := range []struct {
		opt  SpecOpt
		says string
	}{
		{WithMemoryLimit(1 << 20), "minimum"},
		{WithMemoryLimit(-1), "minimum"},
		{WithCPUs(0), "at least 0.01"},
		{WithCPUs(0.001), "at least 0.01"},
		{WithCPUs(-2), "at least 0.01"},
		{WithCPUs(math.NaN()), "at least 0.01"},
		{WithCPUs(math.Inf(1)), "at least 0.01"},
	} {
		_, err := GenerateSpec(context.Background(), "default", "c1", tc.opt)
		wantErr(t, err, errdefs.ErrInvalidArgument, tc.says)
	}
}

func TestContainerOptions(t *testing.T) {
	hook := func(p string) specs.Hook { return specs.Hook{Path: p} }
	s := generate(t,
		WithHostname("0123456789ab"),
		WithAnnotations(map[string]string{"a": "1", "b": "2"}),
		WithAnnotations(map[string]string{"b": "3"}),
		WithHooks(&specs.Hooks{CreateRuntime: []specs.Hook{hook("/a")}, Poststop: []specs.Hook{hook("/z")}}),
		WithHooks(&specs.Hooks{CreateRuntime: []specs.Hook{hook("/b")}, StartContainer: []specs.Hook{hook("/s")}}),
		WithHooks(nil),
		WithRootfs("/var/lib/berth/rootfs", true))
	want := []any{
		"0123456789ab",
		map[string]string{"a": "1", "b": "3"},
		&specs.Hooks{
			CreateRuntime:  []specs.Hook{hook("/a"), hook("/b")},
			StartContainer: []specs.Hook{hook("/s")},
			Poststop:       []specs.Hook{hook("/z")},
		},
		&specs.Root{Path: "/var/lib/berth/rootfs", Readonly: true},
	}
	if diff := cmp.Diff(want, []any{s.Hostname, s.Annotations, s.Hooks, s.Root}); diff != "" {
		t.Errorf("hostname, annotations, hooks, root (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		opt  SpecOpt
		says string
	}{
		{WithHostname(string(make([]byte, 65))), "longer than the kernel's 64"},
		{WithRootfs("", false), "empty path"},
	} {
		_, err := GenerateSpec(context.Background(), "default", "c1", tc.opt)
		wantErr(t, err, errdefs.ErrInvalidArgument, tc.says)
	}
}
