package native

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// inode identifies a file across its hard links.
type inode struct{ dev, ino uint64 }

// copier copies a tree with its metadata: owners, modes, times, extended
// attributes, symbolic links and device nodes as they are, and files hard
// linked within the tree still linked to each other in the copy.
type copier struct {
	ctx   context.Context
	links map[inode]string // the copy of each inode with several links
}

// copyTree copies the entries and metadata of directory src into dst, an
// existing directory. It gives up when ctx is done.
func copyTree(ctx context.Context, dst, src string) error {
	c := &copier{ctx: ctx, links: map[inode]string{}}
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: src, Err: err}
	}
	return c.dir(dst, src, &st)
}

// dir copies the entries of src into dst, then src's metadata onto dst:
// last, as creating the entries changes dst's times.
func (c *copier) dir(dst, src string, st *unix.Stat_t) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := c.entry(filepath.Join(dst, e.Name()), filepath.Join(src, e.Name())); err != nil {
			return err
		}
	}
	return copyMetadata(dst, src, st)
}

func (c *copier) entry(dst, src string) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: src, Err: err}
	}
	typ := st.Mode & unix.S_IFMT
	if typ != unix.S_IFDIR && st.Nlink > 1 {
		k := inode{uint64(st.Dev), st.Ino}
		if first, ok := c.links[k]; ok {
			return os.Link(first, dst)
		}
		c.links[k] = dst
	}
	switch typ {
	case unix.S_IFDIR:
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
		return c.dir(dst, src, &st)
	case unix.S_IFREG:
		if err := copyFile(dst, src); err != nil {
			return err
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO, unix.S_IFSOCK:
		if err := unix.Mknod(dst, st.Mode, int(st.Rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: dst, Err: err}
		}
	default:
		return fmt.Errorf("%s: cannot copy file type %#o", src, typ)
	}
	return copyMetadata(dst, src, &st)
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	// io.Copy between two files uses copy_file_range, which may share
	// extents rather than copy them.
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyMetadata gives dst the owner, mode, extended attributes and times of
// src, in that order: chown clears set-ID bits and file capabilities, and
// each change but the times changes the times.
func copyMetadata(dst, src string, st *unix.Stat_t) error {
	if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Fchmodat(unix.AT_FDCWD, dst, st.Mode&0o7777, 0); err != nil {
			return &os.PathError{Op: "chmod", Path: dst, Err: err}
		}
	}
	if err := copyXattrs(dst, src); err != nil {
		return err
	}
	times := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, times, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: dst, Err: err}
	}
	return nil
}

// copyXattrs copies the extended attributes of src to dst, leaving out
// those dst's filesystem does not support.
func copyXattrs(dst, src string) error {
	names, err := xattrNames(src)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return &os.PathError{Op: "listxattr", Path: src, Err: err}
	}
	for _, name := range names {
		value, err := xattrValue(src, name)
		if err != nil {
			return &os.PathError{Op: "getxattr " + name, Path: src, Err: err}
		}
		if err := unix.Lsetxattr(dst, name, value, 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			return &os.PathError{Op: "setxattr " + name, Path: dst, Err: err}
		}
	}
	return nil
}

func xattrNames(path string) ([]string, error) {
	buf, err := sized(func(b []byte) (int, error) { return unix.Llistxattr(path, b) })
	if err != nil || len(buf) == 0 {
		return nil, err
	}
	return strings.Split(strings.TrimSuffix(string(buf), "\x00"), "\x00"), nil
}

func xattrValue(path, name string) ([]byte, error) {
	return sized(func(b []byte) (int, error) { return unix.Lgetxattr(path, name, b) })
}

// sized calls get with a buffer large enough for its answer: it asks for
// the size first and retries if the answer grew in between (ERANGE).
func sized(get func([]byte) (int, error)) ([]byte, error) {
	for {
		n, err := get(nil)
		if err != nil || n == 0 {
			return nil, err
		}
		buf := make([]byte, n)
		n, err = get(buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
