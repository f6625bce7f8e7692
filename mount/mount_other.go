//go:build !linux

package mount

import (
	"fmt"
	"runtime"

	"github.com/containerd/errdefs"
)

var errUnsupported = fmt.Errorf("mounts on %s: %w", runtime.GOOS, errdefs.ErrNotImplemented)

// Mount mounts m on target; only Linux is supported.
func (m *Mount) Mount(target string) error { return errUnsupported }

// Unmount unmounts target; only Linux is supported.
func Unmount(target string, flags int) error { return errUnsupported }

// UnmountAll unmounts everything on target; only Linux is supported.
func UnmountAll(target string, flags int) error { return errUnsupported }

// MountPointsUnder lists mount points below dir; only Linux is supported.
func MountPointsUnder(dir string) ([]string, error) { return nil, errUnsupported }
