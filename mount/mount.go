// Package mount performs the mounts that snapshotters describe: a Mount is
// the arguments of one mount(2) call in fstab form (type, source, options),
// so that a snapshotter can hand a filesystem to a caller that mounts it
// somewhere else, later, or in another process.
//
// Options are mount(8)'s: flag words (ro, rw, bind, rbind, nosuid, private,
// ...) become mount flags and everything else is passed to the filesystem as
// data. A read-only bind mount is made in two steps, because the kernel
// ignores MS_RDONLY on the first MS_BIND call. An overlay whose options
// exceed the kernel's page-size limit on mount data is mounted from the
// lowerdirs' common parent with relative lowerdirs.
//
// Whoever mounts unmounts: UnmountAll pops every mount stacked on a target,
// and WithTempMount scopes a mount to one function call.
package mount

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
)

// Mount is one filesystem to mount, as containerd's API carries it.
type Mount struct {
	// Type is the filesystem type: "bind", "overlay", "tmpfs"...
	Type string
	// Source is the device, directory or, for pseudo filesystems, a name.
	Source string
	// Target is an optional path below the mount point given to Mount or
	// All, for a mount stacked inside an earlier one. Empty means the
	// mount point itself.
	Target string
	// Options are fstab-style options, joined with "," for mount(2).
	Options []string
}

// All mounts each of mounts on target, in order. It stops at the first
// failure and leaves the earlier mounts in place: the caller unmounts them
// (UnmountMounts), as it would after success.
func All(mounts []Mount, target string) error {
	for _, m := range mounts {
		if err := m.Mount(target); err != nil {
			return err
		}
	}
	return nil
}

// UnmountMounts unmounts what All(mounts, target) mounted, last first. A
// mount that is not there is not an error.
func UnmountMounts(mounts []Mount, target string, flags int) error {
	for i := len(mounts) - 1; i >= 0; i-- {
		path, err := mountPoint(target, mounts[i].Target)
		if err != nil {
			return err
		}
		if err := UnmountAll(path, flags); err != nil {
			return err
		}
	}
	return nil
}

// mountPoint returns where a mount with Target sub goes below root. sub may
// not lead out of root, neither by ".." nor through a symbolic link inside
// an earlier mount.
func mountPoint(root, sub string) (string, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	if sub == "" {
		return root, nil
	}
	path := filepath.Join(root, filepath.Clean("/"+sub))
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("mount target %q below %q: %w", sub, root, err)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", err
	}
	if resolved != realRoot && !strings.HasPrefix(resolved, realRoot+string(os.PathSeparator)) {
		return "", fmt.Errorf("mount target %q resolves to %q, outside %q: %w", sub, resolved, root, errdefs.ErrInvalidArgument)
	}
	return resolved, nil
}
