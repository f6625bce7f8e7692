package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// entry describes one tar entry for tests.
type entry struct {
	name, link string
	typ        byte
	mode       int64
	uid, gid   int
	data       string
	xattrs     map[string]string
	mtime      time.Time
	major      int64
	minor      int64
}

var testTime = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

func reg(name, data string) entry {
	return entry{name: name, typ: tar.TypeReg, mode: 0o644, data: data}
}
func dir(name string) entry { return entry{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) entry {
	return entry{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target}
}
func hardlink(name, target string) entry {
	return entry{name: name, typ: tar.TypeLink, mode: 0o644, link: target}
}
func whiteout(name string) entry { return reg(name, "") }

func buildTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		mt := e.mtime
		if mt.IsZero() {
			mt = testTime
		}
		hdr := &tar.Header{
			Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode,
			Uid: e.uid, Gid: e.gid, Size: int64(len(e.data)), ModTime: mt,
			Devmajor: e.major, Devminor: e.minor, Format: tar.FormatPAX,
		}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		for k, v := range e.xattrs {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords[paxXattr+k] = v
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("write header %q: %v", e.name, err)
		}
		if hdr.Size > 0 {
			if _, err := tw.Write([]byte(e.data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func apply(t testing.TB, root string, entries []entry, opts ...ApplyOpt) error {
	t.Helper()
	_, err := Apply(context.Background(), root, bytes.NewReader(buildTar(t, entries...)), opts...)
	return err
}

func mustApply(t testing.TB, root string, entries []entry, opts ...ApplyOpt) {
	t.Helper()
	if err := apply(t, root, entries, opts...); err != nil {
		t.Fatal(err)
	}
}

// sandbox is a temporary parent holding the root to extract into and a
// sentinel directory next to it that no extraction may touch.
type sandbox struct {
	parent, root, sentinel string
	before                 string
}

func newSandbox(t testing.TB) *sandbox {
	t.Helper()
	p := t.TempDir()
	s := &sandbox{parent: p, root: filepath.Join(p, "root"), sentinel: filepath.Join(p, "sentinel")}
	for _, d := range []string{s.root, s.sentinel, filepath.Join(s.sentinel, "dir")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"victim", "dir/inner"} {
		if err := os.WriteFile(filepath.Join(s.sentinel, f), []byte("original"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.before = describeTree(t, s.sentinel)
	return s
}

// check fails the test if anything outside the root changed.
func (s *sandbox) check(t testing.TB) {
	t.Helper()
	if after := describeTree(t, s.sentinel); after != s.before {
		t.Fatalf("sentinel changed:\nbefore:\n%s\nafter:\n%s", s.before, after)
	}
	ents, err := os.ReadDir(s.parent)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"root", "sentinel"}) {
		t.Fatalf("extraction created %v next to the root", names)
	}
}

// describeTree renders everything observable about a tree: types, modes,
// owners, sizes, link counts, contents, symlink targets, devices, xattrs and
// (for non-directories) mtimes to the second.
func describeTree(t testing.TB, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(&b, "%s %s\n", rel, describeFile(t, p))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func describeFile(t testing.TB, p string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	s := fmt.Sprintf("mode=%o uid=%d gid=%d", st.Mode, st.Uid, st.Gid)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s += fmt.Sprintf(" size=%d nlink=%d sha=%x mtime=%d", st.Size, st.Nlink, sha256.Sum256(data), st.Mtim.Sec)
	case unix.S_IFLNK:
		target, _ := os.Readlink(p)
		s += fmt.Sprintf(" -> %q mtime=%d", target, st.Mtim.Sec)
	case unix.S_IFCHR, unix.S_IFBLK:
		s += fmt.Sprintf(" dev=%d,%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	return s + " xattrs=" + describeXattrs(p)
}

func describeXattrs(p string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return "?"
	}
	var keys []string
	for _, k := range strings.Split(string(buf[:n]), "\x00") {
		if k != "" && k != "security.selinux" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		v := make([]byte, 64<<10)
		m, _ := unix.Lgetxattr(p, k, v)
		parts = append(parts, fmt.Sprintf("%s=%q", k, v[:max(m, 0)]))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root: run the tests as root (make test does)")
	}
}

func lstat(t testing.TB, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// resolverModes runs a test with openat2 and with the fallback walk.
var resolverModes = []struct {
	name string
	opts []ApplyOpt
}{
	{"openat2", nil},
	{"walk", []ApplyOpt{withWalkOnly()}},
}
