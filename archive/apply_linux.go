package archive

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// ApplyOpt configures Apply.
type ApplyOpt func(*applyOptions)

type applyOptions struct {
	overlay  bool
	noChown  bool
	strict   bool
	maxSize  int64
	walkOnly bool // tests: resolve without openat2
}

// WithConvertWhiteout selects the whiteout form. With overlay false (the
// default) Apply writes into a fully mounted rootfs: ".wh.NAME" removes NAME
// and ".wh..wh..opq" removes what lower layers put in the directory. With
// overlay true Apply writes into an empty overlayfs upperdir: ".wh.NAME"
// becomes a 0/0 character device NAME and an opaque directory gets the
// trusted.overlay.opaque=y xattr, as containerd's overlay applier does.
func WithConvertWhiteout(overlay bool) ApplyOpt {
	return func(o *applyOptions) { o.overlay = overlay }
}

// WithChown sets whether entries get the owner the layer names (default
// true). Pass false when not running as root, where chown(2) to other IDs
// fails; files then belong to the caller.
func WithChown(enabled bool) ApplyOpt {
	return func(o *applyOptions) { o.noChown = !enabled }
}

// WithRejectSymlinkEscapes makes a layer path that crosses a symlink leading
// out of the root (an absolute target, or more ".." than there are
// directories) an error. By default (false) such a symlink is followed inside
// the root, as if the root were "/", which is what containerd does and what
// the container will see; nothing outside the root is touched either way.
func WithRejectSymlinkEscapes(reject bool) ApplyOpt {
	return func(o *applyOptions) { o.strict = reject }
}

// WithMaxUnpackedSize fails Apply, with errdefs.ErrResourceExhausted, once
// the contents of its regular files add up to more than n bytes (holes of
// sparse files count). Compression and sparse entries let a small layer
// claim terabytes; the default, 0, sets no limit, as in containerd.
func WithMaxUnpackedSize(n int64) ApplyOpt {
	return func(o *applyOptions) { o.maxSize = n }
}

// withWalkOnly disables openat2 so tests cover the fallback resolver.
func withWalkOnly() ApplyOpt {
	return func(o *applyOptions) { o.walkOnly = true }
}

// Apply unpacks the uncompressed layer tar read from r into root and returns
// the number of bytes it read from r. It stops at the tar end marker; a
// caller that verifies a digest must drain r itself.
//
// Entries are created with their type, mode (including setuid, setgid and
// sticky), owner, extended attributes and times. Directory times are set
// after the whole layer so that later entries do not disturb them. Names are
// cleaned and taken below root ("/etc/x" is root/etc/x); a name or hardlink
// target that climbs out of root with ".." is an error naming the entry.
// Parents a layer does not list are made with mode 0755. An entry that
// exists is replaced, except a directory over a directory, which keeps its
// contents and takes the new metadata. Whiteouts hide only what lower layers
// put there, per the image spec: a file this layer unpacked survives a
// whiteout of its name in the same layer.
//
// Extended attributes: trusted.overlay.* and user.overlay.* are never
// applied (they would steer overlayfs rather than describe a file). Setting
// one is skipped, not fatal, when the filesystem does not support it
// (ENOTSUP) or refuses security.* or trusted.* with EPERM (SELinux, no
// CAP_SYS_ADMIN), or user.* on a symlink or device (never allowed). Device
// nodes the kernel refuses inside a user namespace are skipped likewise.
// Skips are logged at debug level through the context's logger.
func Apply(ctx context.Context, root string, r io.Reader, opts ...ApplyOpt) (int64, error) {
	var o applyOptions
	for _, opt := range opts {
		opt(&o)
	}
	res, err := newResolver(root, o.strict, o.walkOnly)
	if err != nil {
		return 0, fmt.Errorf("apply layer: %w", err)
	}
	a := &applier{opts: o, dirs: newDirCache(res), unpacked: map[string]struct{}{}}
	defer a.dirs.close()
	bufp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bufp)
	a.buf = *bufp

	cr := &countingReader{r: r}
	tr := tar.NewReader(bufio.NewReaderSize(cr, 64<<10))
	for {
		if err := ctx.Err(); err != nil {
			return cr.n, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) { // we judge paths ourselves
			return cr.n, fmt.Errorf("apply layer: read tar header: %w", err)
		}
		if err := a.entry(ctx, hdr, tr); err != nil {
			return cr.n, err
		}
	}
	return cr.n, a.finish()
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// applier is the state of one Apply.
type applier struct {
	opts applyOptions
	dirs *dirCache
	buf  []byte
	size int64 // file contents written so far
	// unpacked holds the canonical names of the entries this layer made,
	// which its own whiteouts must spare.
	unpacked map[string]struct{}
	// dirTimes are set last, children first, so creating children does not
	// bump them.
	dirTimes []dirTime
}

type dirTime struct {
	name  string
	times [2]unix.Timespec
}

// entryError says which entry failed and how.
func entryError(name, op string, err error) error {
	if op == "" {
		return fmt.Errorf("apply layer: entry %q: %w", name, err)
	}
	return fmt.Errorf("apply layer: entry %q: %s: %w", name, op, err)
}

// cleanName turns a tar name into a clean path below the root, "" for the
// root itself. Leading slashes are dropped; a ".." that climbs above the
// root after cleaning is errEscape.
func cleanName(name string) (string, error) {
	p := path.Clean(strings.TrimLeft(name, "/"))
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", errEscape
	}
	if p == "." {
		return "", nil
	}
	return p, nil
}

// splitName splits a clean name into its parent ("" for the root) and base.
func splitName(name string) (string, string) {
	dir, base := path.Split(name)
	return strings.TrimSuffix(dir, "/"), base
}

func (a *applier) entry(ctx context.Context, hdr *tar.Header, data io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return entryError(hdr.Name, "", err)
	}
	if name == "" {
		return nil // the root's own metadata belongs to the snapshotter, as in containerd
	}
	a.dirs.trim()
	dir, base := splitName(name)
	if strings.HasPrefix(base, whiteoutPrefix) {
		if err := a.whiteout(hdr, dir, base); err != nil {
			return entryError(hdr.Name, "whiteout", err)
		}
		return nil
	}
	if !supportedType(hdr.Typeflag) {
		return entryError(hdr.Name, "", fmt.Errorf("unsupported tar entry type %q: %w", hdr.Typeflag, errdefs.ErrNotImplemented))
	}
	parent, err := a.dirs.get(dir, true)
	if err != nil {
		return entryError(hdr.Name, "open parent directory", err)
	}
	if err := a.create(ctx, parent, name, base, hdr, data); err != nil {
		return entryError(hdr.Name, "", err)
	}
	a.unpacked[parent.join(base)] = struct{}{}
	return nil
}

func supportedType(t byte) bool {
	switch t {
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont, tar.TypeDir, tar.TypeSymlink,
		tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return true
	}
	return false
}

// finish sets directory times, deepest and latest first.
func (a *applier) finish() error {
	for i := len(a.dirTimes) - 1; i >= 0; i-- {
		d := a.dirTimes[i]
		a.dirs.trim()
		dir, base := splitName(d.name)
		parent, err := a.dirs.get(dir, false)
		if err != nil {
			continue // removed by a later entry
		}
		var st unix.Stat_t
		if unix.Fstatat(parent.fd, base, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue // replaced by a later entry
		}
		if err := unix.UtimesNanoAt(parent.fd, base, d.times[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return entryError(d.name, "set times", err)
		}
	}
	return nil
}

// headerTimes returns atime and mtime for utimensat; a missing atime is the
// mtime.
func headerTimes(hdr *tar.Header) [2]unix.Timespec {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	return [2]unix.Timespec{timespec(atime), timespec(hdr.ModTime)}
}

// timespec converts without UnixNano, which overflows past year 2262.
func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}
