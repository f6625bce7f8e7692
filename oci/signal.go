package oci

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// ParseSignal reads a signal as kill(1), docker and image configs
// (StopSignal) give it: a number, or a name with or without SIG, in any
// case (9, KILL, sigterm, SIGRTMIN+3).
func ParseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("signal %d is out of range 1-64: %w", n, errdefs.ErrInvalidArgument)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	if rest, ok := strings.CutPrefix(name, "SIGRTMIN+"); ok {
		if n, err := strconv.Atoi(rest); err == nil && n >= 0 && sigRTMin+n <= 64 {
			return syscall.Signal(sigRTMin + n), nil
		}
	}
	return 0, fmt.Errorf("unknown signal %q: give a number or a name such as SIGTERM or KILL: %w", s, errdefs.ErrInvalidArgument)
}

// sigRTMin is glibc's SIGRTMIN, which userland programs see.
const sigRTMin = 34
