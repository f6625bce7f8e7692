package archive

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// WriteDiffOverlay writes to w an uncompressed OCI layer tar of the changes
// recorded in an overlayfs upperdir, which must not be mounted for writing
// meanwhile. Everything in upperdir is a change and is written; overlay's
// 0/0 character devices become ".wh." whiteouts and a directory marked
// opaque (trusted.overlay.opaque or user.overlay.opaque "y") is followed by
// ".wh..wh..opq". An upperdir that used redirect_dir or metacopy cannot be
// read without its lower layers and is an error naming the path; mount such
// snapshots and use WriteDiff instead.
func WriteDiffOverlay(ctx context.Context, w io.Writer, upperdir string) error {
	d := newDiffWriter(w, upperdir)
	defer d.release()
	err := d.overlayDir(ctx, "")
	if err == nil {
		err = d.tw.Close()
	}
	if err != nil {
		return fmt.Errorf("write diff of overlay upperdir %q: %w", upperdir, err)
	}
	return nil
}

func (d *diffWriter) overlayDir(ctx context.Context, rel string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	names, err := readNames(filepath.Join(d.upper, rel))
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := d.overlayEntry(ctx, joinRel(rel, n)); err != nil {
			return err
		}
	}
	return nil
}

func (d *diffWriter) overlayEntry(ctx context.Context, rel string) error {
	p := filepath.Join(d.upper, rel)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	keys, err := listXattrs(p)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if lowerDependent[k] {
			return fmt.Errorf("%s has %s: %w", p, k, errdefs.ErrNotImplemented)
		}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		if st.Rdev == 0 {
			dir, base := splitName(rel)
			return d.writeWhiteout(dir, base)
		}
	case unix.S_IFDIR:
		if err := d.writeEntry(rel, &st); err != nil {
			return err
		}
		if opaque, err := isOpaque(p, keys); err != nil {
			return err
		} else if opaque {
			if err := d.writeMarker(joinRel(rel, whiteoutOpaque)); err != nil {
				return err
			}
		}
		return d.overlayDir(ctx, rel)
	}
	return d.writeEntry(rel, &st)
}

// lowerDependent are the overlay xattrs whose meaning lives in a lower layer.
var lowerDependent = map[string]bool{
	"trusted.overlay.redirect": true, "trusted.overlay.metacopy": true,
	"user.overlay.redirect": true, "user.overlay.metacopy": true,
}

func isOpaque(p string, keys []string) (bool, error) {
	for _, key := range keys {
		if key != overlayOpaqueXattr && key != "user.overlay.opaque" {
			continue
		}
		v, err := getXattr(p, key)
		if err != nil && err != unix.ENODATA {
			return false, fmt.Errorf("get xattr %q of %s: %w", key, p, err)
		}
		if string(v) == "y" {
			return true, nil
		}
	}
	return false, nil
}
