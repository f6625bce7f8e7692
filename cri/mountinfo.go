package cri

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
)

// mountInfoPath is the mount table read for propagation checks; tests
// replace it.
var mountInfoPath = "/proc/self/mountinfo"

// checkPropagation checks that the host mount holding path can propagate
// as a container mount asks: an rshared mount needs a shared host mount,
// an rslave one a shared or slave host mount. Otherwise mounts would
// silently not propagate; the error says what to do.
func checkPropagation(path string, needShared bool) error {
	point, optional, err := mountOf(path)
	if err != nil {
		return err
	}
	shared := strings.Contains(optional, "shared:")
	slave := strings.Contains(optional, "master:")
	switch {
	case needShared && !shared:
		return fmt.Errorf("host path %s is on mount %s, which is not a shared mount (bidirectional propagation needs one: mount --make-rshared %s): %w",
			path, point, point, errdefs.ErrInvalidArgument)
	case !needShared && !shared && !slave:
		return fmt.Errorf("host path %s is on mount %s, which is neither a shared nor a slave mount (host-to-container propagation needs one: mount --make-rshared %s): %w",
			path, point, point, errdefs.ErrInvalidArgument)
	}
	return nil
}

// mountOf returns the mount point holding path (resolved) and that
// mount's optional fields ("shared:1 master:2").
func mountOf(path string) (point, optional string, err error) {
	f, err := os.Open(mountInfoPath)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	best := -1
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		fields := strings.Fields(sc.Text())
		if len(fields) < 7 {
			continue
		}
		mp := unescapeMountPoint(fields[4])
		if !within(path, mp) || len(mp) < best {
			continue
		}
		var opt []string
		for _, f := range fields[6:] {
			if f == "-" {
				break
			}
			opt = append(opt, f)
		}
		best, point, optional = len(mp), mp, strings.Join(opt, " ")
	}
	if err := sc.Err(); err != nil {
		return "", "", err
	}
	if best < 0 {
		return "", "", fmt.Errorf("no mount holds %s: %w", path, errdefs.ErrNotFound)
	}
	return point, optional, nil
}

func within(path, mountPoint string) bool {
	if mountPoint == "/" {
		return true
	}
	rel, err := filepath.Rel(mountPoint, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// unescapeMountPoint undoes the kernel's octal escapes (\040 for a space).
func unescapeMountPoint(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
