package archive

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// writeHeader writes the entry rel of upper, and its contents if it is a
// regular file. Sockets are skipped: a layer cannot carry them.
func (d *diffWriter) writeHeader(rel string, st *unix.Stat_t) error {
	p := filepath.Join(d.upper, rel)
	hdr, err := statHeader(p, rel, st)
	if err != nil || hdr == nil {
		return err
	}
	if err := d.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 {
		return nil
	}
	return d.copyContents(p, hdr.Size)
}

func statHeader(p, rel string, st *unix.Stat_t) (*tar.Header, error) {
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, 0),
		Format:  tar.FormatPAX,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
	case unix.S_IFDIR:
		hdr.Typeflag, hdr.Name = tar.TypeDir, rel+"/"
	case unix.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return nil, err
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return nil, nil // a socket
	}
	xattrs, err := layerXattrs(p)
	if err != nil {
		return nil, err
	}
	for k, v := range xattrs {
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords[paxXattr+k] = v
	}
	return hdr, nil
}

// copyContents copies exactly size bytes of p into the tar; a file that
// changes size meanwhile is an error, not a corrupt layer.
func (d *diffWriter) copyContents(p string, size int64) error {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// Hide WriterTo/ReaderFrom so the pooled buffer is the one used.
	n, err := io.CopyBuffer(struct{ io.Writer }{d.tw}, struct{ io.Reader }{io.LimitReader(f, size)}, *d.bufp)
	if err != nil {
		return fmt.Errorf("copy %s: %w", p, err)
	}
	if n != size {
		return fmt.Errorf("copy %s: file shrank from %d to %d bytes while writing the layer", p, size, n)
	}
	return nil
}

// layerXattrs returns the xattrs of p that belong in a layer.
func layerXattrs(p string) (map[string]string, error) {
	keys, err := listXattrs(p)
	if err != nil {
		return nil, err
	}
	var m map[string]string
	for _, k := range keys {
		if k == "security.selinux" || isOverlayPrivate(k) {
			continue
		}
		v, err := getXattr(p, k)
		if err == unix.ENODATA {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("get xattr %q of %s: %w", k, p, err)
		}
		if m == nil {
			m = map[string]string{}
		}
		m[k] = string(v)
	}
	return m, nil
}

func listXattrs(p string) ([]string, error) {
	for size := 1024; ; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Llistxattr(p, buf)
		if err == unix.ERANGE && size < 1<<20 {
			continue
		}
		if err == unix.ENOTSUP {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list xattrs of %s: %w", p, err)
		}
		if n == 0 {
			return nil, nil
		}
		return strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00"), nil
	}
}

func getXattr(p, key string) ([]byte, error) {
	for size := 256; ; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(p, key, buf)
		if err == unix.ERANGE && size < 1<<20 {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// sameXattrs compares the layer-relevant xattrs of two paths.
func sameXattrs(a, b string) (bool, error) {
	xa, err := layerXattrs(a)
	if err != nil {
		return false, err
	}
	xb, err := layerXattrs(b)
	if err != nil {
		return false, err
	}
	if len(xa) != len(xb) {
		return false, nil
	}
	for k, v := range xa {
		if w, ok := xb[k]; !ok || v != w {
			return false, nil
		}
	}
	return true, nil
}
