package mount

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Unmount unmounts the top mount on target. While the mount is busy it
// retries for a little over two seconds: a process that just exited may
// still hold it.
func Unmount(target string, flags int) error {
	for attempt := 0; ; attempt++ {
		err := unix.Unmount(target, flags)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || attempt == 50 {
			return &os.PathError{Op: "unmount", Path: target, Err: err}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// UnmountAll unmounts everything at or below target: the mounts below it
// first (an rbind brings its submounts along, and they keep target busy),
// newest first, then every mount stacked on target until the kernel says
// none is left (EINVAL: not a mount point). A target that does not exist
// has nothing mounted on it.
func UnmountAll(target string, flags int) error {
	if target == "" {
		return nil
	}
	points, err := MountPointsUnder(target)
	if err != nil {
		return err
	}
	if slices.Contains(points, "/") {
		return fmt.Errorf("unmount everything below %q: refused for the root directory: %w", target, errdefs.ErrInvalidArgument)
	}
	for _, p := range slices.Backward(points) {
		if err := unmountStack(p, flags); err != nil {
			return err
		}
	}
	return unmountStack(target, flags)
}

// unmountStack unmounts target until it is not a mount point.
func unmountStack(target string, flags int) error {
	for {
		err := Unmount(target, flags)
		switch {
		case err == nil:
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil
		default:
			return err
		}
	}
}

// MountPointsUnder returns the mount points of the calling process's mount
// namespace at or below dir, in the order they were mounted (a point with
// stacked mounts is listed once per mount). dir's symbolic links are
// resolved first, as the kernel reports resolved paths.
func MountPointsUnder(dir string) ([]string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.EvalSymlinks(dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options...
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMountinfo(fields[4])
		if p == dir || strings.HasPrefix(p, dir+"/") || dir == "/" {
			points = append(points, p)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read /proc/self/mountinfo: %w", err)
	}
	return points, nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space)
// in a mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
