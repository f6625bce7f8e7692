package oci

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// maxImageFile bounds what is read of an image's file: a passwd or group
// file is a few kilobytes, an image could hold gigabytes there.
const maxImageFile = 16 << 20

// openat2 is the system call; tests replace it to run the fallback that
// kernels before 5.6 (without openat2) get.
var openat2 = unix.Openat2

// maxSymlinks is the kernel's limit on the links followed in one path.
const maxSymlinks = 40

// readImageFile reads the regular file name, an absolute path as the
// container will see it, of the root filesystem at rootfs. Symbolic links
// are followed as if rootfs were "/": an absolute link or a ".." never
// leads out of it, so an image cannot make berth read a host file
// (/etc/passwd -> ../../../../etc/shadow reads rootfs/etc/shadow).
func readImageFile(rootfs, name string) ([]byte, error) {
	f, err := openInRoot(rootfs, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s in rootfs %q: not a regular file (%s)", name, rootfs, st.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxImageFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s in rootfs %q: %w", name, rootfs, err)
	}
	if len(data) > maxImageFile {
		return nil, fmt.Errorf("%s in rootfs %q: larger than %d bytes", name, rootfs, maxImageFile)
	}
	return data, nil
}

// openFlags open for reading without blocking on a FIFO or taking a
// terminal an image put in place of a file.
const openFlags = unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK

// openInRoot opens name inside rootfs with openat2(RESOLVE_IN_ROOT), which
// lets the kernel confine the whole resolution, or, where the kernel lacks
// openat2, by resolving the links itself first.
func openInRoot(rootfs, name string) (*os.File, error) {
	dirfd, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open rootfs", Path: rootfs, Err: err}
	}
	defer unix.Close(dirfd)
	how := &unix.OpenHow{Flags: openFlags, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	for range 8 { // EAGAIN: a rename raced the lookup; the kernel asks to retry
		fd, err := openat2(dirfd, name, how)
		switch {
		case err == nil:
			return os.NewFile(uintptr(fd), filepath.Join(rootfs, name)), nil
		case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EPERM):
			// No openat2 (or a seccomp filter that hides it, as old
			// container runtimes' profiles do).
			return openResolved(rootfs, name)
		case !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR):
			return nil, &os.PathError{Op: "open", Path: name + " in rootfs " + rootfs, Err: err}
		}
	}
	return nil, &os.PathError{Op: "open", Path: name + " in rootfs " + rootfs, Err: unix.EAGAIN}
}

// openResolved is the fallback: resolve name's links within rootfs, then
// open the result without following a link at its end. A link swapped in
// between the two is not caught, which is acceptable here: the rootfs is
// read before its container starts, so nothing inside it runs yet.
func openResolved(rootfs, name string) (*os.File, error) {
	resolved, err := resolveInRoot(rootfs, name)
	if err != nil {
		return nil, err
	}
	p := filepath.Join(rootfs, resolved)
	fd, err := unix.Open(p, openFlags|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// resolveInRoot follows the symbolic links of name inside rootfs as the
// kernel would with rootfs as "/", and returns the path, relative to
// rootfs, that name leads to.
func resolveInRoot(rootfs, name string) (string, error) {
	var done []string // components resolved, none of them a link
	todo := strings.Split(name, "/")
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		p := filepath.Join(rootfs, path.Join(done...), c)
		fi, err := os.Lstat(p)
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			done = append(done, c)
			continue
		}
		if links++; links > maxSymlinks {
			return "", &os.PathError{Op: "resolve", Path: name + " in rootfs " + rootfs, Err: unix.ELOOP}
		}
		target, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			done = done[:0]
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return path.Join(done...), nil
}
