package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// WriteDiff writes to w an uncompressed OCI layer tar of the changes that
// turn the tree lower into the tree upper; lower "" stands for an empty tree.
// Applied on top of lower, the layer gives upper's contents, types, modes,
// owners, symlinks, hardlinks, devices and xattrs.
//
// Both trees are walked side by side in name order. A name only in upper is
// added with everything below it; a name only in lower becomes a ".wh."
// whiteout; a name in both is written when it differs: type, mode, owner,
// device or xattrs for everything, and for non-directories size, mtime and,
// when the mtimes agree to the second but one may have lost its nanoseconds,
// contents. Unchanged directories above a change are written too, so a layer
// never leaves a parent's metadata to the applier's defaults. Sockets are
// skipped. Mtimes are kept to the second, as containerd and Docker do.
// Xattrs are all carried except security.selinux (a host label) and
// overlayfs's private ones. A name starting with ".wh." cannot be expressed
// in a layer and is an error.
func WriteDiff(ctx context.Context, w io.Writer, lower, upper string) error {
	d := newDiffWriter(w, upper)
	defer d.release()
	var err error
	if lower == "" {
		err = d.addChildren(ctx, "")
	} else {
		err = d.compareDir(ctx, lower, "")
	}
	if err == nil {
		err = d.tw.Close()
	}
	if err != nil {
		return fmt.Errorf("write diff of %q over %q: %w", upper, lower, err)
	}
	return nil
}

type devIno struct{ dev, ino uint64 }

// diffWriter writes one layer. Names are relative to upper, "" the root.
type diffWriter struct {
	tw    *tar.Writer
	upper string
	bufp  *[]byte
	// pending are directories on the way down that have not been written;
	// the first change below them writes them, parents first.
	pending []string
	// links maps an inode with several names to the first name written;
	// unchangedLinks keeps the unchanged names of inodes not yet written,
	// to be linked once one of their names turns out to have changed.
	links          map[devIno]string
	unchangedLinks map[devIno][]string
	// markTime is the mtime of entries that have none of their own:
	// whiteouts and hardlinks. Fixed, so a change always gives one layer.
	markTime time.Time
}

func newDiffWriter(w io.Writer, upper string) *diffWriter {
	return &diffWriter{
		tw:             tar.NewWriter(w),
		upper:          upper,
		bufp:           copyBufPool.Get().(*[]byte),
		links:          map[devIno]string{},
		unchangedLinks: map[devIno][]string{},
		markTime:       time.Unix(0, 0),
	}
}

func (d *diffWriter) release() { copyBufPool.Put(d.bufp) }

func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// readNames returns the sorted names in dir.
func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read directory %s: %w", dir, err)
	}
	slices.Sort(names)
	return names, nil
}

// compareDir walks the directory rel, present in both trees, in name order.
func (d *diffWriter) compareDir(ctx context.Context, lower, rel string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	lnames, err := readNames(filepath.Join(lower, rel))
	if err != nil {
		return err
	}
	unames, err := readNames(filepath.Join(d.upper, rel))
	if err != nil {
		return err
	}
	for len(lnames) > 0 || len(unames) > 0 {
		switch {
		case len(unames) == 0 || (len(lnames) > 0 && lnames[0] < unames[0]):
			err = d.writeWhiteout(rel, lnames[0])
			lnames = lnames[1:]
		case len(lnames) == 0 || unames[0] < lnames[0]:
			err = d.addTree(ctx, joinRel(rel, unames[0]))
			unames = unames[1:]
		default:
			err = d.compareEntry(ctx, lower, joinRel(rel, unames[0]))
			lnames, unames = lnames[1:], unames[1:]
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// compareEntry handles a name present in both trees.
func (d *diffWriter) compareEntry(ctx context.Context, lower, rel string) error {
	lp, up := filepath.Join(lower, rel), filepath.Join(d.upper, rel)
	var lst, ust unix.Stat_t
	if err := unix.Lstat(lp, &lst); err != nil {
		return &os.PathError{Op: "lstat", Path: lp, Err: err}
	}
	if err := unix.Lstat(up, &ust); err != nil {
		return &os.PathError{Op: "lstat", Path: up, Err: err}
	}
	if lst.Mode&unix.S_IFMT != ust.Mode&unix.S_IFMT {
		return d.addTree(ctx, rel) // replaces whatever lower had
	}
	changed, err := d.changed(&lst, &ust, lp, up)
	if err != nil {
		return err
	}
	if ust.Mode&unix.S_IFMT != unix.S_IFDIR {
		if !changed {
			return d.noteUnchangedLink(rel, &ust)
		}
		return d.writeEntry(rel, &ust)
	}
	if changed {
		if err := d.writeEntry(rel, &ust); err != nil {
			return err
		}
	} else {
		d.pending = append(d.pending, rel)
	}
	err = d.compareDir(ctx, lower, rel)
	if n := len(d.pending); n > 0 && d.pending[n-1] == rel {
		d.pending = d.pending[:n-1] // nothing below changed
	}
	return err
}

// addTree writes rel from upper and everything below it.
func (d *diffWriter) addTree(ctx context.Context, rel string) error {
	p := filepath.Join(d.upper, rel)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	if err := d.writeEntry(rel, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	return d.addChildren(ctx, rel)
}

func (d *diffWriter) addChildren(ctx context.Context, rel string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	names, err := readNames(filepath.Join(d.upper, rel))
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := d.addTree(ctx, joinRel(rel, n)); err != nil {
			return err
		}
	}
	return nil
}

// changed reports whether an entry of the same type differs between lower
// and upper, with containerd's rules (see WriteDiff).
func (d *diffWriter) changed(l, u *unix.Stat_t, lp, up string) (bool, error) {
	if l.Dev == u.Dev && l.Ino == u.Ino {
		return false, nil
	}
	if l.Mode != u.Mode || l.Uid != u.Uid || l.Gid != u.Gid || l.Rdev != u.Rdev {
		return true, nil
	}
	if same, err := sameXattrs(lp, up); err != nil || !same {
		return !same, err
	}
	if u.Mode&unix.S_IFMT == unix.S_IFDIR {
		return false, nil
	}
	if l.Size != u.Size || l.Mtim.Sec != u.Mtim.Sec {
		return true, nil
	}
	if l.Mtim.Nsec != 0 && u.Mtim.Nsec != 0 {
		return l.Mtim.Nsec != u.Mtim.Nsec, nil
	}
	// One side may have been through a tar that kept whole seconds only.
	switch u.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		lt, err1 := os.Readlink(lp)
		ut, err2 := os.Readlink(up)
		return lt != ut, firstErr(err1, err2)
	case unix.S_IFREG:
		same, err := d.sameContents(lp, up)
		return !same, err
	}
	return false, nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *diffWriter) sameContents(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	buf := *d.bufp
	ba, bb := buf[:len(buf)/2], buf[len(buf)/2:]
	for {
		na, erra := io.ReadFull(fa, ba)
		nb, errb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if erra == io.EOF || erra == io.ErrUnexpectedEOF {
			return errb == erra, nil
		}
		if err := firstErr(erra, errb); err != nil {
			return false, err
		}
	}
}

// noteUnchangedLink remembers an unchanged name of a multiply-linked inode:
// if another name of it was written already, this one links to it;
// otherwise it waits for one to be written.
func (d *diffWriter) noteUnchangedLink(rel string, st *unix.Stat_t) error {
	if st.Nlink < 2 {
		return nil
	}
	key := devIno{st.Dev, st.Ino}
	if first, ok := d.links[key]; ok {
		return d.writeLink(rel, first)
	}
	d.unchangedLinks[key] = append(d.unchangedLinks[key], rel)
	return nil
}

// writeLink writes rel as a hardlink to target, an earlier entry. The
// parents of an unchanged name are unchanged, so none are written for it.
func (d *diffWriter) writeLink(rel, target string) error {
	hdr := &tar.Header{Typeflag: tar.TypeLink, Name: rel, Linkname: target,
		ModTime: d.markTime, Format: tar.FormatPAX}
	if err := d.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	return nil
}

// flushPending writes the unchanged directories above the next entry.
func (d *diffWriter) flushPending() error {
	pending := d.pending
	d.pending = nil
	for _, rel := range pending {
		var st unix.Stat_t
		p := filepath.Join(d.upper, rel)
		if err := unix.Lstat(p, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: p, Err: err}
		}
		if err := d.writeHeader(rel, &st); err != nil {
			return err
		}
	}
	return nil
}

func (d *diffWriter) writeWhiteout(dir, name string) error {
	if err := d.flushPending(); err != nil {
		return err
	}
	return d.writeMarker(joinRel(dir, whiteoutPrefix+name))
}

// writeMarker writes an empty whiteout file.
func (d *diffWriter) writeMarker(name string) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, ModTime: d.markTime, Format: tar.FormatPAX}
	if err := d.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// writeEntry writes rel from upper, with its parents if they are pending,
// as a hardlink if another name of its inode is already in the layer, and
// followed by the unchanged names of its inode.
func (d *diffWriter) writeEntry(rel string, st *unix.Stat_t) error {
	if strings.HasPrefix(filepath.Base(rel), whiteoutPrefix) {
		return fmt.Errorf("%s: name is reserved for whiteouts: %w", rel, errdefs.ErrInvalidArgument)
	}
	if err := d.flushPending(); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR || st.Nlink < 2 {
		return d.writeHeader(rel, st)
	}
	key := devIno{st.Dev, st.Ino}
	if first, ok := d.links[key]; ok {
		return d.writeLink(rel, first)
	}
	if err := d.writeHeader(rel, st); err != nil {
		return err
	}
	d.links[key] = rel
	for _, other := range d.unchangedLinks[key] {
		if err := d.writeLink(other, rel); err != nil {
			return err
		}
	}
	delete(d.unchangedLinks, key)
	return nil
}
