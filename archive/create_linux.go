package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/berth-dev/berth/log"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// create makes the entry base in parent from hdr; name is its clean path.
func (a *applier) create(ctx context.Context, parent *dirHandle, name, base string, hdr *tar.Header, data io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeDir:
		return a.createDir(ctx, parent, name, base, hdr)
	case tar.TypeSymlink:
		return a.createSymlink(ctx, parent, base, hdr)
	case tar.TypeLink:
		return a.createHardlink(parent, base, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return a.createNode(ctx, parent, base, hdr)
	}
	return a.createFile(ctx, parent, base, hdr, data)
}

// makeRoom removes whatever is at base in parent, a whole tree if need be.
// Removing a directory or symlink can change what cached names resolve to,
// so the cache is flushed, except for the handles the caller still holds.
func (a *applier) makeRoom(parent *dirHandle, base string, keep ...*dirHandle) error {
	var st unix.Stat_t
	if err := unix.Fstatat(parent.fd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return fmt.Errorf("replace existing: %w", err)
	}
	if err := removeAllAt(parent.fd, base); err != nil {
		return fmt.Errorf("replace existing: %w", err)
	}
	if t := st.Mode & unix.S_IFMT; t == unix.S_IFDIR || t == unix.S_IFLNK {
		a.dirs.flush(append(keep, parent)...)
	}
	return nil
}

// retryExist runs create, and once more after clearing the way if the name
// is taken. Trying first saves a stat on the common path: a fresh directory.
func (a *applier) retryExist(parent *dirHandle, base string, create func() error, keep ...*dirHandle) error {
	err := create()
	if err != unix.EEXIST {
		return err
	}
	if err := a.makeRoom(parent, base, keep...); err != nil {
		return err
	}
	return create()
}

func (a *applier) createFile(ctx context.Context, parent *dirHandle, base string, hdr *tar.Header, data io.Reader) error {
	fd := -1
	err := a.retryExist(parent, base, func() (err error) {
		// O_EXCL|O_NOFOLLOW: never write through anything already there.
		fd, err = unix.Openat(parent.fd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return fmt.Errorf("create file: %w", err)
	}
	err = a.copyData(ctx, fd, hdr, data)
	if err == nil {
		err = a.setFDMeta(ctx, fd, hdr, true)
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = fmt.Errorf("close file: %w", cerr)
	}
	if err != nil {
		return err
	}
	return a.setTimes(parent, base, hdr)
}

// copyData streams the entry's contents into fd in copyBufSize chunks.
// For a sparse entry, all-zero chunks become holes, so a sparse file stays
// sparse on disk.
func (a *applier) copyData(ctx context.Context, fd int, hdr *tar.Header, data io.Reader) error {
	sparse := isSparse(hdr)
	var off int64
	for {
		n, rerr := data.Read(a.buf)
		if n > 0 {
			if a.opts.maxSize > 0 && a.size+int64(n) > a.opts.maxSize {
				return fmt.Errorf("unpacked size exceeds the limit of %d bytes: %w", a.opts.maxSize, errdefs.ErrResourceExhausted)
			}
			a.size += int64(n)
			if !sparse || !bytes.Equal(a.buf[:n], zeros[:n]) {
				if err := pwriteAll(fd, a.buf[:n], off); err != nil {
					return fmt.Errorf("write file: %w", err)
				}
			}
			off += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("read contents: %w", rerr)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if sparse {
		if err := unix.Ftruncate(fd, off); err != nil {
			return fmt.Errorf("truncate sparse file: %w", err)
		}
	}
	return nil
}

var zeros [copyBufSize]byte

// isSparse reports a GNU sparse entry, old style or PAX.
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

func pwriteAll(fd int, p []byte, off int64) error {
	for len(p) > 0 {
		n, err := unix.Pwrite(fd, p, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

func (a *applier) createDir(ctx context.Context, parent *dirHandle, name, base string, hdr *tar.Header) error {
	err := unix.Mkdirat(parent.fd, base, 0o700)
	if err == unix.EEXIST {
		var st unix.Stat_t
		err = unix.Fstatat(parent.fd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			// Not a directory (a symlink to one counts as not): replace.
			if err = a.makeRoom(parent, base); err == nil {
				err = unix.Mkdirat(parent.fd, base, 0o700)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	fd, err := unix.Openat(parent.fd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	a.dirs.put(name, &dirHandle{fd: fd, canon: parent.join(base)})
	if err := a.setFDMeta(ctx, fd, hdr, true); err != nil {
		return err
	}
	a.dirTimes = append(a.dirTimes, dirTime{name: name, times: headerTimes(hdr)})
	return nil
}

func (a *applier) createSymlink(ctx context.Context, parent *dirHandle, base string, hdr *tar.Header) error {
	// The target is data: stored as is, never followed here.
	err := a.retryExist(parent, base, func() error {
		return unix.Symlinkat(hdr.Linkname, parent.fd, base)
	})
	if err != nil {
		return fmt.Errorf("create symlink: %w", err)
	}
	if err := a.setAtMeta(ctx, parent, base, hdr, false); err != nil {
		return err
	}
	return a.setTimes(parent, base, hdr)
}

// createHardlink links base to another entry below the root. The target's
// directory is resolved inside the root like any path; its last component
// is not followed, so a link to a symlink is a second name for the symlink.
// A hardlink shares its target's inode and so its metadata: the header's
// mode and owner are not applied, the target's first entry set them.
func (a *applier) createHardlink(parent *dirHandle, base string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err == nil && target == "" {
		err = fmt.Errorf("link to the root directory: %w", unix.EPERM)
	}
	if err != nil {
		return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
	}
	tdir, tbase := splitName(target)
	tparent, err := a.dirs.get(tdir, false)
	if err != nil {
		return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
	}
	err = a.retryExist(parent, base, func() error {
		return unix.Linkat(tparent.fd, tbase, parent.fd, base, 0)
	}, tparent)
	if err != nil {
		return fmt.Errorf("hardlink to %q: %w", hdr.Linkname, err)
	}
	return nil
}

func (a *applier) createNode(ctx context.Context, parent *dirHandle, base string, hdr *tar.Header) error {
	mode := uint32(hdr.Mode) & 0o777
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode |= unix.S_IFCHR
	case tar.TypeBlock:
		mode |= unix.S_IFBLK
	default:
		mode |= unix.S_IFIFO
	}
	dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
	err := a.retryExist(parent, base, func() error {
		return unix.Mknodat(parent.fd, base, mode, dev)
	})
	if err == unix.EPERM && hdr.Typeflag != tar.TypeFifo && inUserNS() {
		log.G(ctx).Debug("apply layer: device node skipped in a user namespace", "name", parent.join(base))
		return nil
	}
	if err != nil {
		return fmt.Errorf("mknod: %w", err)
	}
	if err := a.setAtMeta(ctx, parent, base, hdr, true); err != nil {
		return err
	}
	return a.setTimes(parent, base, hdr)
}

// inUserNS reports whether the process runs in a user namespace, where the
// kernel refuses mknod of devices even to root.
var inUserNS = sync.OnceValue(func() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
})

// setFDMeta sets owner, mode and xattrs of an open file or directory.
// chown comes first: it clears setuid/setgid and security.capability.
func (a *applier) setFDMeta(ctx context.Context, fd int, hdr *tar.Header, dataOrDir bool) error {
	if !a.opts.noChown {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("chown to %d:%d: %w", hdr.Uid, hdr.Gid, err)
		}
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode)&0o7777); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return a.setXattrs(ctx, hdr, dataOrDir, func(k string, v []byte) error {
		return unix.Fsetxattr(fd, k, v, 0)
	})
}

// setAtMeta sets owner, mode (unless a symlink) and xattrs of an entry that
// cannot be opened: a symlink, a device or a fifo.
func (a *applier) setAtMeta(ctx context.Context, parent *dirHandle, base string, hdr *tar.Header, chmod bool) error {
	if !a.opts.noChown {
		if err := unix.Fchownat(parent.fd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown to %d:%d: %w", hdr.Uid, hdr.Gid, err)
		}
	}
	if chmod {
		if err := chmodAt(parent.fd, base, uint32(hdr.Mode)&0o7777); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	if !hasXattrs(hdr) {
		return nil
	}
	// No lsetxattrat before Linux 6.13: name the entry through its parent's
	// descriptor; the magic link pins the directory, base is not followed.
	p := "/proc/self/fd/" + strconv.Itoa(parent.fd) + "/" + base
	return a.setXattrs(ctx, hdr, false, func(k string, v []byte) error {
		return unix.Lsetxattr(p, k, v, 0)
	})
}

// chmodAt changes the mode of name in dirfd without following a symlink:
// fchmodat2 where the kernel has it (6.6), else a check that name is not a
// symlink before plain fchmodat, which is enough while nothing else writes
// below the root.
func chmodAt(dirfd int, name string, mode uint32) error {
	err := unix.Fchmodat(dirfd, name, mode, unix.AT_SYMLINK_NOFOLLOW)
	if err != unix.EOPNOTSUPP {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return unix.EOPNOTSUPP
	}
	return unix.Fchmodat(dirfd, name, mode, 0)
}

func (a *applier) setTimes(parent *dirHandle, base string, hdr *tar.Header) error {
	ts := headerTimes(hdr)
	if err := unix.UtimesNanoAt(parent.fd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

func hasXattrs(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, paxXattr) {
			return true
		}
	}
	return false
}

// isOverlayPrivate matches the xattrs overlayfs keeps for itself.
func isOverlayPrivate(key string) bool {
	return strings.HasPrefix(key, "trusted.overlay.") || strings.HasPrefix(key, "user.overlay.")
}

// setXattrs applies the header's SCHILY.xattr records with set; see Apply
// for which failures are skipped.
func (a *applier) setXattrs(ctx context.Context, hdr *tar.Header, dataOrDir bool, set func(string, []byte) error) error {
	for rec, val := range hdr.PAXRecords {
		key, ok := strings.CutPrefix(rec, paxXattr)
		if !ok || isOverlayPrivate(key) {
			continue
		}
		err := set(key, []byte(val))
		if err == nil {
			continue
		}
		if xattrSkippable(key, err, dataOrDir) {
			log.G(ctx).Debug("apply layer: xattr skipped", "entry", hdr.Name, "xattr", key, "error", err)
			continue
		}
		return fmt.Errorf("set xattr %q: %w", key, err)
	}
	return nil
}

func xattrSkippable(key string, err error, dataOrDir bool) bool {
	switch {
	case errors.Is(err, unix.ENOTSUP):
		return true
	case !errors.Is(err, unix.EPERM):
		return false
	case strings.HasPrefix(key, "security.") || strings.HasPrefix(key, "trusted."):
		return true
	}
	return strings.HasPrefix(key, "user.") && !dataOrDir
}
