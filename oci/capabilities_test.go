package oci

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeProcess makes this process appear to have the bounding set caps and
// the oom_score_adj score, for the test's duration.
func fakeProcess(t *testing.T, caps []string, score int) {
	t.Helper()
	origCaps, origScore := readBoundingCaps, readOOMScoreAdj
	t.Cleanup(func() { readBoundingCaps, readOOMScoreAdj = origCaps, origScore })
	readBoundingCaps = func() ([]string, error) { return slices.Clone(caps), nil }
	readOOMScoreAdj = func() (int, error) { return score, nil }
}

func TestParseCapBnd(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status string
		want   []string
		err    bool
	}{
		{"none", "Name:\tx\nCapBnd:\t0000000000000000\n", nil, false},
		{"chown, kill, sys_admin", "CapInh:\t0000000000000000\nCapBnd:\t0000000000200021\nCapAmb:\t0\n", []string{"CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"}, false},
		{"all but sys_resource, and bits past the table", "CapBnd:\tfffffffffeffffff", slices.DeleteFunc(slices.Clone(capabilityNames), func(c string) bool { return c == "CAP_SYS_RESOURCE" }), false},
		{"no line", "Name:\tx\n", nil, true},
		{"not hex", "CapBnd:\tzz\n", nil, true},
	} {
		got, err := parseCapBnd([]byte(tc.status))
		if (err != nil) != tc.err {
			t.Errorf("%s: error %v, want error %v", tc.name, err, tc.err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	// This process's own status parses.
	if _, err := readBoundingCaps(); err != nil {
		t.Error(err)
	}
}

func TestWithOOMScoreAdj(t *testing.T) {
	withResource := []string{"CAP_KILL", "CAP_SYS_RESOURCE"}
	without := []string{"CAP_KILL"}
	for _, tc := range []struct {
		name    string
		caps    []string
		current int
		adj     int
		want    int
	}{
		{"with CAP_SYS_RESOURCE any score goes", withResource, 0, -999, -999},
		{"with CAP_SYS_RESOURCE a raise goes", withResource, -500, 500, 500},
		{"without it a lower score is clamped to the current one", without, 0, -999, 0},
		{"without it the current score goes", without, 100, 100, 100},
		{"without it a higher score goes", without, -500, 300, 300},
		{"without it a negative current score is the floor", without, -500, -900, -500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fakeProcess(t, tc.caps, tc.current)
			s := generate(t, WithOOMScoreAdj(tc.adj))
			if s.Process.OOMScoreAdj == nil || *s.Process.OOMScoreAdj != tc.want {
				t.Errorf("oom_score_adj %v, want %d", s.Process.OOMScoreAdj, tc.want)
			}
		})
	}
	for _, adj := range []int{-1001, 1001} {
		_, err := GenerateSpec(context.Background(), "default", "c1", WithOOMScoreAdj(adj))
		wantErr(t, err, errdefs.ErrInvalidArgument, "from -1000 to 1000")
	}
	fakeProcess(t, without, 0)
	readOOMScoreAdj = func() (int, error) { return 0, errors.New("no /proc") }
	_, err := GenerateSpec(context.Background(), "default", "c1", WithOOMScoreAdj(-10))
	if err == nil {
		t.Error("no error when the current score cannot be read")
	}
}

func TestCapabilityOptions(t *testing.T) {
	fakeProcess(t, []string{"CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_ADMIN"}, 0)
	for _, tc := range []struct {
		name string
		opts []SpecOpt
		want []string
	}{
		{"add in docker's spellings", []SpecOpt{WithAddedCapabilities("sys_admin", "NET_ADMIN", "CAP_CHOWN")},
			append(defaultCapabilities(), "CAP_SYS_ADMIN", "CAP_NET_ADMIN")},
		{"drop", []SpecOpt{WithDroppedCapabilities("net_raw", "CAP_MKNOD")},
			slices.DeleteFunc(defaultCapabilities(), func(c string) bool { return c == "CAP_NET_RAW" || c == "CAP_MKNOD" })},
		{"drop all then add", []SpecOpt{WithDroppedCapabilities("ALL"), WithAddedCapabilities("kill")}, []string{"CAP_KILL"}},
		{"add all is this process's set", []SpecOpt{WithDroppedCapabilities("all"), WithAddedCapabilities("ALL")},
			[]string{"CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_ADMIN"}},
	} {
		s := generate(t, tc.opts...)
		c := s.Process.Capabilities
		for _, set := range [][]string{c.Bounding, c.Effective, c.Permitted} {
			if diff := cmp.Diff(tc.want, set); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tc.name, diff)
			}
		}
		if c.Inheritable != nil || c.Ambient != nil {
			t.Errorf("%s: inheritable %v, ambient %v", tc.name, c.Inheritable, c.Ambient)
		}
	}
	for _, o := range []SpecOpt{WithAddedCapabilities("CAP_NOPE"), WithDroppedCapabilities("sys_everything")} {
		_, err := GenerateSpec(context.Background(), "default", "c1", o)
		wantErr(t, err, errdefs.ErrInvalidArgument, "unknown")
	}
}

func TestWithPrivileged(t *testing.T) {
	caps := []string{"CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_SYS_MODULE"}
	fakeProcess(t, caps, 0)
	s := generate(t, withDevice(specs.LinuxDevice{Path: "/dev/null", Type: "c", Major: 1, Minor: 3}), WithPrivileged())
	c := s.Process.Capabilities
	if diff := cmp.Diff([][]string{caps, caps, caps}, [][]string{c.Bounding, c.Effective, c.Permitted}); diff != "" {
		t.Errorf("capabilities (-want +got):\n%s", diff)
	}
	if s.Linux.Seccomp != nil || s.Linux.MaskedPaths != nil || s.Linux.ReadonlyPaths != nil {
		t.Errorf("seccomp %v, masked %v, read-only %v: want none", s.Linux.Seccomp != nil, s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	for _, dst := range []string{"/sys", "/sys/fs/cgroup"} {
		if m, _ := mountAt(s, dst); slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "rw") {
			t.Errorf("%s options %q, want rw", dst, m.Options)
		}
	}
	if diff := cmp.Diff([]specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}, s.Linux.Resources.Devices); diff != "" {
		t.Errorf("device rules (-want +got):\n%s", diff)
	}
	var null []specs.LinuxDevice
	for _, d := range s.Linux.Devices {
		if d.Path == "/dev/null" {
			null = append(null, d)
		}
		if d.Path == "/dev/console" || d.Path == "/dev/pts/ptmx" {
			t.Errorf("device %s passed on", d.Path)
		}
	}
	if len(null) != 1 || null[0].FileMode != nil {
		t.Errorf("/dev/null devices %+v, want only the caller's", null)
	}
	if !slices.ContainsFunc(s.Linux.Devices, func(d specs.LinuxDevice) bool {
		return d.Path == "/dev/zero" && d.Type == "c" && d.Major == 1 && d.Minor == 5 && d.FileMode != nil
	}) {
		t.Errorf("host's /dev/zero missing from %d devices", len(s.Linux.Devices))
	}
	// A profile given after --privileged still applies: the last choice wins.
	s = generate(t, WithPrivileged(), WithSeccompProfile(writeProfile(t, `{"defaultAction":"SCMP_ACT_LOG"}`)))
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActLog {
		t.Errorf("seccomp %+v, want the profile", s.Linux.Seccomp)
	}
}

// withDevice adds one device node, as a caller's --device would.
func withDevice(d specs.LinuxDevice) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		l := ensureLinux(s)
		l.Devices = append(l.Devices, d)
		return nil
	}
}
