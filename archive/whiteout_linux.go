package archive

import (
	"archive/tar"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// whiteout applies the whiteout entry base in directory dir.
func (a *applier) whiteout(hdr *tar.Header, dir, base string) error {
	if base == whiteoutOpaque {
		return a.opaque(dir)
	}
	if strings.HasPrefix(base, whiteoutMetaPrefix) {
		return nil // other AUFS metadata (.wh..wh.plnk...): not a change
	}
	target := base[len(whiteoutPrefix):]
	if target == "" || target == "." || target == ".." {
		return fmt.Errorf("invalid whiteout name %q: %w", base, errdefs.ErrInvalidArgument)
	}
	if a.opts.overlay {
		return a.overlayWhiteout(hdr, dir, target)
	}
	parent, err := a.dirs.get(dir, false)
	if err == unix.ENOENT || err == unix.ENOTDIR {
		return nil // nothing below to hide
	}
	if err != nil {
		return fmt.Errorf("open parent directory: %w", err)
	}
	if _, ok := a.unpacked[parent.join(target)]; ok {
		return nil // a whiteout hides lower layers only, never its own layer
	}
	return a.makeRoom(parent, target)
}

// overlayWhiteout records a deletion the way overlayfs does: a character
// device 0/0 in the upperdir.
func (a *applier) overlayWhiteout(hdr *tar.Header, dir, target string) error {
	parent, err := a.dirs.get(dir, true)
	if err != nil {
		return fmt.Errorf("open parent directory: %w", err)
	}
	if _, ok := a.unpacked[parent.join(target)]; ok {
		return nil
	}
	if err := a.makeRoom(parent, target); err != nil {
		return err
	}
	if err := unix.Mknodat(parent.fd, target, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("mknod overlay whiteout: %w", err)
	}
	if a.opts.noChown {
		return nil
	}
	if err := unix.Fchownat(parent.fd, target, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown overlay whiteout: %w", err)
	}
	return nil
}

// opaque hides everything lower layers put in dir.
func (a *applier) opaque(dir string) error {
	if a.opts.overlay {
		d, err := a.dirs.get(dir, true)
		if err != nil {
			return fmt.Errorf("open directory: %w", err)
		}
		if err := unix.Fsetxattr(d.fd, overlayOpaqueXattr, []byte{'y'}, 0); err != nil {
			return fmt.Errorf("set %s: %w", overlayOpaqueXattr, err)
		}
		return nil
	}
	d, err := a.dirs.get(dir, false)
	if err == unix.ENOENT || err == unix.ENOTDIR {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	removed, err := a.clearLower(d)
	if removed {
		a.dirs.flush(d)
	}
	return err
}

// clearLower removes from d everything this layer did not unpack. A kept
// directory may still hold entries of lower layers, so it is cleared too.
func (a *applier) clearLower(d *dirHandle) (removed bool, err error) {
	names, err := listDir(d.fd)
	if err != nil {
		return false, err
	}
	for _, n := range names {
		key := d.join(n)
		if _, ok := a.unpacked[key]; !ok {
			if err := removeAllAt(d.fd, n); err != nil {
				return true, fmt.Errorf("remove %q: %w", key, err)
			}
			removed = true
			continue
		}
		fd, err := unix.Openat(d.fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOTDIR || err == unix.ELOOP {
			continue // a file or symlink this layer made
		}
		if err != nil {
			return removed, err
		}
		sub, err := a.clearLower(&dirHandle{fd: fd, canon: key})
		unix.Close(fd)
		removed = removed || sub
		if err != nil {
			return removed, err
		}
	}
	return removed, nil
}
