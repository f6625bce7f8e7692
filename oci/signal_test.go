package oci

import (
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{
		"9": syscall.SIGKILL, "KILL": syscall.SIGKILL, "sigterm": syscall.SIGTERM,
		"SIGHUP": syscall.SIGHUP, "usr1": syscall.SIGUSR1, "SIGRTMIN+3": syscall.Signal(37),
	} {
		if got, err := ParseSignal(in); err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "65", "SIGNOPE", "RTMIN+40", "-1"} {
		if _, err := ParseSignal(in); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseSignal(%q): %v, want invalid argument", in, err)
		}
	}
}
