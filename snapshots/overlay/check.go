package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/berth-dev/berth/mount"
	"github.com/containerd/errdefs"
)

// probe mounts a two-layer overlay from a scratch directory under root,
// to check that overlayfs works on root's filesystem and to learn which of
// the options berth wants the kernel takes. It returns those options.
func probe(root string) ([]string, error) {
	var base []string
	if inUserNamespace() {
		base = append(base, "userxattr")
	}
	var errs []error
	for _, options := range [][]string{slices.Concat(base, []string{"index=off"}), base} {
		err := tryOverlay(filepath.Join(root, "probe"), options)
		if err == nil {
			return options, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("overlayfs is not usable on %s: %w: %w", root, errors.Join(errs...), errdefs.ErrNotImplemented)
}

// tryOverlay mounts and unmounts a test overlay with options in dir, which
// it creates and removes. The name is fixed: a crash in the middle leaves
// dir to the next probe, which starts by removing it.
func tryOverlay(dir string, options []string) (err error) {
	merged := filepath.Join(dir, "merged")
	reset := func() error {
		if err := mount.UnmountAll(merged, 0); err != nil {
			return err
		}
		return os.RemoveAll(dir)
	}
	if err := reset(); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, reset()) }()
	for _, d := range []string{"lower1", "lower2", "upper", "work", "merged"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	m := mount.Mount{Type: "overlay", Source: "overlay", Options: append([]string{
		"lowerdir=" + filepath.Join(dir, "lower2") + ":" + filepath.Join(dir, "lower1"),
		"upperdir=" + filepath.Join(dir, "upper"),
		"workdir=" + filepath.Join(dir, "work"),
	}, options...)}
	return m.Mount(merged)
}

// inUserNamespace reports whether the process runs in a user namespace
// other than the initial one, whose uid_map maps all 2³²-1 IDs to
// themselves.
func inUserNamespace() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	return strings.Join(strings.Fields(string(bytes.TrimSpace(b))), " ") != "0 0 4294967295"
}

// rootAttrs returns the permission bits and owner of dir.
func rootAttrs(dir string) (os.FileMode, int, int, error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		return 0, 0, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, 0, fmt.Errorf("%s: no owner information", dir)
	}
	mode := fi.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)
	return mode, int(st.Uid), int(st.Gid), nil
}
