package native

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCopyTree checks what copyTree keeps: content, owner, mode with
// set-ID bits, times, user xattrs, symlinks, hard links, device nodes.
func TestCopyTree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("owners and device nodes need root: run the tests as root (make test does)")
	}
	src, dst := t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	p := func(name string) string { return filepath.Join(src, name) }
	must(os.Mkdir(p("dir"), 0o750))
	must(os.WriteFile(p("dir/file"), []byte("content"), 0o600))
	must(os.Chmod(p("dir/file"), 0o4710))
	must(os.Lchown(p("dir/file"), 1234, 5678))
	must(unix.Lsetxattr(p("dir/file"), "user.k", []byte("v"), 0))
	must(os.Link(p("dir/file"), p("link")))
	must(os.Symlink("dir/file", p("sym")))
	must(os.Lchown(p("sym"), 42, 43))
	must(unix.Mknod(p("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(unix.Mkfifo(p("fifo"), 0o620))
	old := []unix.Timespec{{Sec: 1000000000, Nsec: 5}, {Sec: 1000000001, Nsec: 7}}
	for _, name := range []string{"dir/file", "sym", "dir", "."} {
		must(unix.UtimesNanoAt(unix.AT_FDCWD, p(name), old, unix.AT_SYMLINK_NOFOLLOW))
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := copyTree(ctx, t.TempDir(), src); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled copy: %v", err)
	}
	must(copyTree(context.Background(), dst, src))

	for _, name := range []string{".", "dir", "dir/file", "link", "sym", "null", "fifo"} {
		var s, d unix.Stat_t
		must(unix.Lstat(p(name), &s))
		must(unix.Lstat(filepath.Join(dst, name), &d))
		if s.Mode != d.Mode || s.Uid != d.Uid || s.Gid != d.Gid || s.Rdev != d.Rdev || s.Size != d.Size {
			t.Errorf("%s: mode %#o owner %d:%d rdev %d size %d, want %#o %d:%d %d %d",
				name, d.Mode, d.Uid, d.Gid, d.Rdev, d.Size, s.Mode, s.Uid, s.Gid, s.Rdev, s.Size)
		}
		if s.Mtim != d.Mtim {
			t.Errorf("%s: mtime %v, want %v", name, d.Mtim, s.Mtim)
		}
	}
	var f, l unix.Stat_t
	must(unix.Lstat(filepath.Join(dst, "dir/file"), &f))
	must(unix.Lstat(filepath.Join(dst, "link"), &l))
	if f.Ino != l.Ino {
		t.Error("hard link split in the copy")
	}
	v := make([]byte, 16)
	n, err := unix.Lgetxattr(filepath.Join(dst, "dir/file"), "user.k", v)
	if err != nil || string(v[:n]) != "v" {
		t.Errorf("xattr: %q, %v", v[:n], err)
	}
	if target, err := os.Readlink(filepath.Join(dst, "sym")); err != nil || target != "dir/file" {
		t.Errorf("symlink: %q, %v", target, err)
	}
}
