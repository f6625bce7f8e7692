package oci

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// writeProfile writes a seccomp profile file and returns its path.
func writeProfile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// allowed reports whether p allows the syscall name by some rule.
func allowed(p *specs.LinuxSeccomp, name string) bool {
	return slices.ContainsFunc(p.Syscalls, func(r specs.LinuxSyscall) bool {
		return r.Action == specs.ActAllow && slices.Contains(r.Names, name)
	})
}

func TestDefaultSeccomp(t *testing.T) {
	p := generate(t).Linux.Seccomp
	if p == nil {
		t.Fatal("no seccomp profile")
	}
	if p.DefaultAction != specs.ActErrno {
		t.Errorf("default action %s, want %s", p.DefaultAction, specs.ActErrno)
	}
	if runtime.GOARCH == "amd64" && !slices.Equal(p.Architectures, []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}) {
		t.Errorf("architectures %v, want x86-64 and its sub-architectures", p.Architectures)
	}
	for _, name := range []string{"read", "write", "openat", "execve", "exit_group", "futex", "chown", "setuid"} {
		if !allowed(p, name) {
			t.Errorf("%s not allowed", name)
		}
	}
	// Needing capabilities the default set lacks, or never allowed.
	for _, name := range []string{"mount", "umount2", "reboot", "init_module", "kexec_load", "sethostname", "kcmp"} {
		if allowed(p, name) {
			t.Errorf("%s allowed by default", name)
		}
	}
}

// The profile's capability-conditional rules follow the final bounding
// set, whatever the order of the options.
func TestSeccompFollowsCapabilities(t *testing.T) {
	fakeProcess(t, capabilityNames, 0)
	for _, tc := range []struct {
		name    string
		opts    []SpecOpt
		syscall string
		want    bool
	}{
		{"mount without CAP_SYS_ADMIN", nil, "mount", false},
		{"mount with CAP_SYS_ADMIN", []SpecOpt{WithAddedCapabilities("SYS_ADMIN")}, "mount", true},
		{"reboot with CAP_SYS_BOOT", []SpecOpt{WithAddedCapabilities("SYS_BOOT")}, "reboot", true},
		{"kcmp with CAP_SYS_PTRACE", []SpecOpt{WithAddedCapabilities("SYS_PTRACE")}, "kcmp", true},
		{"chroot with the default CAP_SYS_CHROOT", nil, "chroot", true},
		{"chroot without CAP_SYS_CHROOT", []SpecOpt{WithDroppedCapabilities("SYS_CHROOT")}, "chroot", false},
		{"cap added then dropped", []SpecOpt{WithAddedCapabilities("SYS_ADMIN"), WithDroppedCapabilities("SYS_ADMIN")}, "mount", false},
		{"chown dropped", []SpecOpt{WithDroppedCapabilities("ALL")}, "chown", true}, // unconditional
		{"profile file first, cap after", []SpecOpt{
			WithSeccompProfile(writeProfile(t, `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
				{"names":["getpid"],"action":"SCMP_ACT_ALLOW"},
				{"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}}]}`)),
			WithAddedCapabilities("CAP_SYS_ADMIN"),
		}, "mount", true},
		{"profile file without the cap", []SpecOpt{
			WithSeccompProfile(writeProfile(t, `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
				{"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}}]}`)),
		}, "mount", false},
	} {
		p := generate(t, tc.opts...).Linux.Seccomp
		if p == nil {
			t.Errorf("%s: no profile", tc.name)
			continue
		}
		if got := allowed(p, tc.syscall); got != tc.want {
			t.Errorf("%s: %s allowed %v, want %v", tc.name, tc.syscall, got, tc.want)
		}
	}
}

func TestSeccompChoice(t *testing.T) {
	profile := writeProfile(t, `{"defaultAction":"SCMP_ACT_KILL","syscalls":[{"names":["exit"],"action":"SCMP_ACT_ALLOW"}]}`)
	for _, tc := range []struct {
		name string
		opts []SpecOpt
		want specs.LinuxSeccompAction // "" for none
	}{
		{"default", nil, specs.ActErrno},
		{"unconfined", []SpecOpt{WithSeccompUnconfined()}, ""},
		{"profile", []SpecOpt{WithSeccompProfile(profile)}, specs.ActKill},
		{"unconfined then profile", []SpecOpt{WithSeccompUnconfined(), WithSeccompProfile(profile)}, specs.ActKill},
		{"profile then unconfined", []SpecOpt{WithSeccompProfile(profile), WithSeccompUnconfined()}, ""},
	} {
		p := generate(t, tc.opts...).Linux.Seccomp
		switch {
		case tc.want == "" && p != nil:
			t.Errorf("%s: profile %s, want none", tc.name, p.DefaultAction)
		case tc.want != "" && (p == nil || p.DefaultAction != tc.want):
			t.Errorf("%s: profile %+v, want default action %s", tc.name, p, tc.want)
		}
	}
}

func TestWithSeccompProfileErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.json")
	for _, tc := range []struct {
		name, file string
		class      error
	}{
		{"missing", missing, errdefs.ErrNotFound},
		{"not JSON", writeProfile(t, `{"defaultAction":`), errdefs.ErrInvalidArgument},
		{"empty profile", writeProfile(t, `{}`), errdefs.ErrInvalidArgument},
		{"both archMap and architectures", writeProfile(t, `{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],"archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}`), errdefs.ErrInvalidArgument},
	} {
		_, err := GenerateSpec(context.Background(), "default", "c1", WithSeccompProfile(tc.file))
		wantErr(t, err, tc.class, "seccomp profile", tc.file)
	}
}
