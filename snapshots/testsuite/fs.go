package testsuite

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// change is one filesystem operation, applied the same way to a mounted
// snapshot and to a plain reference directory.
type change struct {
	desc string
	fn   func(root string) error
}

func apply(t *testing.T, root string, changes []change) {
	t.Helper()
	for _, c := range changes {
		if err := c.fn(root); err != nil {
			t.Fatalf("%s in %s: %v", c.desc, root, err)
		}
	}
}

func at(root, p string) string { return filepath.Join(root, filepath.FromSlash(p)) }

// writeFile creates or replaces file p with content and mode.
func writeFile(p, content string, mode os.FileMode) change {
	return change{"write " + p, func(root string) error {
		if err := os.WriteFile(at(root, p), []byte(content), mode); err != nil {
			return err
		}
		return os.Chmod(at(root, p), mode) // the umask applied to WriteFile
	}}
}

func mkdir(p string, mode os.FileMode) change {
	return change{"mkdir " + p, func(root string) error {
		if err := os.Mkdir(at(root, p), mode); err != nil {
			return err
		}
		return os.Chmod(at(root, p), mode)
	}}
}

func remove(p string) change {
	return change{"remove " + p, func(root string) error { return os.RemoveAll(at(root, p)) }}
}

func chmod(p string, mode os.FileMode) change {
	return change{"chmod " + p, func(root string) error { return os.Chmod(at(root, p), mode) }}
}

func chown(p string, uid, gid int) change {
	return change{"chown " + p, func(root string) error { return os.Lchown(at(root, p), uid, gid) }}
}

func symlink(target, p string) change {
	return change{"symlink " + p, func(root string) error { return os.Symlink(target, at(root, p)) }}
}

func hardlink(existing, p string) change {
	return change{"link " + p, func(root string) error { return os.Link(at(root, existing), at(root, p)) }}
}

func rename(from, to string) change {
	return change{"rename " + from, func(root string) error { return os.Rename(at(root, from), at(root, to)) }}
}

// mknod creates a device node or fifo; mode includes the type bits.
func mknod(p string, mode uint32, dev int) change {
	return change{"mknod " + p, func(root string) error { return unix.Mknod(at(root, p), mode, dev) }}
}

func setxattr(p, name, value string) change {
	return change{"setxattr " + p, func(root string) error {
		return unix.Lsetxattr(at(root, p), name, []byte(value), 0)
	}}
}

// entry is what the suite compares of a file: not times, not link counts
// (overlayfs breaks a hard link when it copies one name up).
type entry struct {
	kind     string
	mode     os.FileMode // permission and set-ID bits; none for symlinks
	uid, gid uint32
	content  string // file content, symlink target or device number
	xattrs   string // user.* attributes, sorted
}

// tree maps slash paths below a root ("/" for the root) to entries.
type tree map[string]entry

func (tr tree) clone() tree {
	out := make(tree, len(tr))
	for k, v := range tr {
		out[k] = v
	}
	return out
}

// diff describes the differences between want and got, "" when none.
func (want tree) diff(got tree) string {
	var lines []string
	for p, w := range want {
		if g, ok := got[p]; !ok {
			lines = append(lines, fmt.Sprintf("-%s %+v", p, w))
		} else if g != w {
			lines = append(lines, fmt.Sprintf("-%s %+v\n+%s %+v", p, w, p, g))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			lines = append(lines, fmt.Sprintf("+%s %+v", p, g))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func readTree(t *testing.T, root string) tree {
	t.Helper()
	tr := tree{}
	err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		e, err := readEntry(path)
		if err != nil {
			return err
		}
		tr["/"+strings.TrimPrefix(filepath.ToSlash(rel), ".")] = e
		return nil
	})
	if err != nil {
		t.Fatalf("read tree %s: %v", root, err)
	}
	return tr
}

func readEntry(path string) (entry, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return entry{}, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	e := entry{
		mode: fi.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky),
		uid:  st.Uid,
		gid:  st.Gid,
	}
	switch m := fi.Mode(); {
	case m.IsDir():
		e.kind = "dir"
	case m.IsRegular():
		b, err := os.ReadFile(path)
		e.kind, e.content = "file", string(b)
		if err != nil {
			return entry{}, err
		}
	case m&os.ModeSymlink != 0:
		target, err := os.Readlink(path)
		e.kind, e.content, e.mode = "symlink", target, 0
		if err != nil {
			return entry{}, err
		}
	default:
		e.kind = m.Type().String()
		e.content = fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	e.xattrs, err = userXattrs(path)
	return e, err
}

// userXattrs returns the user.* attributes of path as "name=value" pairs,
// sorted; overlayfs keeps its own attributes in other namespaces.
func userXattrs(path string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(path, buf)
	if errors.Is(err, unix.ENOTSUP) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var pairs []string
	for name := range strings.SplitSeq(string(buf[:n]), "\x00") {
		if !strings.HasPrefix(name, "user.") {
			continue
		}
		v := make([]byte, 4096)
		m, err := unix.Lgetxattr(path, name, v)
		if err != nil {
			return "", err
		}
		pairs = append(pairs, name+"="+string(v[:m]))
	}
	slices.Sort(pairs)
	return strings.Join(pairs, ";"), nil
}
