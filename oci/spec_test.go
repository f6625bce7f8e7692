package oci

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// generate is GenerateSpec for container "c1" in namespace "default",
// failing the test on an error.
func generate(t *testing.T, opts ...SpecOpt) *specs.Spec {
	t.Helper()
	s, err := GenerateSpec(context.Background(), "default", "c1", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wantErr checks that err is of class want and says each of says.
func wantErr(t *testing.T, err error, want error, says ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", want)
	}
	if !errors.Is(err, want) {
		t.Errorf("error %q is not %v", err, want)
	}
	for _, s := range says {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
}

func mountAt(s *specs.Spec, dst string) (specs.Mount, bool) {
	i := slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == dst })
	if i < 0 {
		return specs.Mount{}, false
	}
	return s.Mounts[i], true
}

func namespaceTypes(s *specs.Spec) []specs.LinuxNamespaceType {
	var out []specs.LinuxNamespaceType
	for _, n := range s.Linux.Namespaces {
		out = append(out, n.Type)
	}
	return out
}

func TestDefaultSpec(t *testing.T) {
	s, err := GenerateSpec(context.Background(), "k8s.io", "abc")
	if err != nil {
		t.Fatal(err)
	}
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
		"CAP_KILL", "CAP_AUDIT_WRITE"}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"version", s.Version, "1.0.2-dev"},
		{"root", *s.Root, specs.Root{Path: "rootfs"}},
		{"args", s.Process.Args, []string(nil)},
		{"env", s.Process.Env, []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
		{"cwd", s.Process.Cwd, "/"},
		{"user", s.Process.User, specs.User{}},
		{"terminal", s.Process.Terminal, false},
		{"no new privileges", s.Process.NoNewPrivileges, false},
		{"bounding", s.Process.Capabilities.Bounding, caps},
		{"effective", s.Process.Capabilities.Effective, caps},
		{"permitted", s.Process.Capabilities.Permitted, caps},
		{"inheritable", s.Process.Capabilities.Inheritable, []string(nil)},
		{"ambient", s.Process.Capabilities.Ambient, []string(nil)},
		{"rlimits", s.Process.Rlimits, []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}}},
		{"oom score", s.Process.OOMScoreAdj, (*int)(nil)},
		{"hostname", s.Hostname, ""},
		{"cgroups path", s.Linux.CgroupsPath, "/k8s.io/abc"},
		{"namespaces", namespaceTypes(s), []specs.LinuxNamespaceType{"pid", "ipc", "uts", "mount", "network"}},
		{"mount points", mountPoints(s), []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"}},
		{"masked", slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") && slices.Contains(s.Linux.MaskedPaths, "/sys/firmware"), true},
		{"read-only", slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") && slices.Contains(s.Linux.ReadonlyPaths, "/proc/sysrq-trigger"), true},
		{"seccomp", s.Linux.Seccomp != nil, true},
	} {
		if diff := cmp.Diff(tc.want, tc.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	for _, dst := range []string{"/sys", "/sys/fs/cgroup"} {
		if m, _ := mountAt(s, dst); !slices.Contains(m.Options, "ro") {
			t.Errorf("%s mount options %q, want read-only", dst, m.Options)
		}
	}
}

func mountPoints(s *specs.Spec) []string {
	var out []string
	for _, m := range s.Mounts {
		out = append(out, m.Destination)
	}
	return out
}

func TestDefaultDeviceRules(t *testing.T) {
	s := generate(t)
	rules := s.Linux.Resources.Devices
	if len(rules) == 0 || rules[0].Allow || rules[0].Type != "" || rules[0].Major != nil || rules[0].Access != "rwm" {
		t.Fatalf("first device rule %+v, want deny all", rules)
	}
	type dev struct {
		major, minor int64 // minor -1: all
	}
	var allowed []dev
	for _, r := range rules[1:] {
		if !r.Allow || r.Type != "c" || r.Access != "rwm" || r.Major == nil {
			t.Errorf("rule %+v: want an rwm allow of a character device", r)
			continue
		}
		d := dev{*r.Major, -1}
		if r.Minor != nil {
			d.minor = *r.Minor
		}
		allowed = append(allowed, d)
	}
	want := []dev{{1, 3}, {1, 8}, {1, 7}, {5, 0}, {1, 5}, {1, 9}, {5, 1}, {136, -1}, {5, 2}}
	if diff := cmp.Diff(want, allowed, cmp.AllowUnexported(dev{})); diff != "" {
		t.Errorf("allowed devices (-want +got):\n%s", diff)
	}
}

func TestGenerateSpecIdentifiers(t *testing.T) {
	for _, tc := range []struct{ ns, id, says string }{
		{"", "c1", "namespace"},
		{"default", "", "container id"},
		{"default", "../../etc", "container id"},
		{"a/b", "c1", "namespace"},
	} {
		_, err := GenerateSpec(context.Background(), tc.ns, tc.id)
		wantErr(t, err, errdefs.ErrInvalidArgument, tc.says)
	}
}

// Options apply in order and stop at the first error.
func TestGenerateSpecOptionError(t *testing.T) {
	ran := false
	_, err := GenerateSpec(context.Background(), "default", "c1",
		WithCwd("relative"),
		func(context.Context, *specs.Spec) error { ran = true; return nil })
	wantErr(t, err, errdefs.ErrInvalidArgument, `"relative"`)
	if ran {
		t.Error("an option after the failing one ran")
	}
}

// Every option works on a spec GenerateSpec did not make, even an empty one.
func TestOptionsOnEmptySpec(t *testing.T) {
	ctx := context.Background()
	for _, o := range []SpecOpt{
		WithProcessArgs("sh"), WithEnv([]string{"A=1"}), WithCwd("/x"), WithTTY(true), WithUser(specs.User{UID: 1}),
		WithNoNewPrivileges(true), WithRlimit("nofile", 2, 1), WithHostname("h"), WithNetNSPath("/run/netns/x"),
		WithHostNamespace(specs.PIDNamespace), WithMounts(specs.Mount{Destination: "/m"}), WithMemoryLimit(64 << 20),
		WithCPUs(1), WithAnnotations(map[string]string{"a": "b"}), WithHooks(&specs.Hooks{}), WithRootfs("r", true),
		WithAddedCapabilities("SYS_ADMIN"), WithDroppedCapabilities("ALL"), WithSeccompUnconfined(),
	} {
		if err := o(ctx, &specs.Spec{}); err != nil {
			t.Error(err)
		}
	}
	s := &specs.Spec{}
	if err := WithAddedCapabilities("CAP_SYS_ADMIN")(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := WithSeccompProfile(writeProfile(t, `{"defaultAction":"SCMP_ACT_ERRNO"}`))(ctx, s); err != nil {
		t.Fatal(err)
	}
	if s.Linux == nil || s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
		t.Errorf("profile on a spec of its own: %+v", s.Linux)
	}
}
