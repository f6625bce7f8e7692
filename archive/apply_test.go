package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func TestApplyEntryTypes(t *testing.T) {
	requireRoot(t)
	for _, mode := range resolverModes {
		t.Run(mode.name, func(t *testing.T) {
			root := t.TempDir()
			old := time.Date(2001, 2, 3, 4, 5, 6, 700, time.UTC)
			entries := []entry{
				{name: "bin/", typ: tar.TypeDir, mode: 0o750, uid: 11, gid: 12, mtime: old},
				{name: "bin/su", typ: tar.TypeReg, mode: 0o4755, uid: 0, gid: 0, data: "setuid", mtime: old},
				{name: "bin/wall", typ: tar.TypeReg, mode: 0o2755, uid: 0, gid: 5, data: "setgid"},
				{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
				{name: "bin/ping", typ: tar.TypeReg, mode: 0o755, uid: 1000, gid: 1000, data: "cap",
					xattrs: map[string]string{"security.capability": capNetRaw, "user.note": "hi", "trusted.t": "x"}},
				{name: "bin/sh", typ: tar.TypeSymlink, link: "/bin/busybox", uid: 7, gid: 8},
				{name: "bin/busybox", typ: tar.TypeReg, mode: 0o755, data: "bb"},
				{name: "bin/ash", typ: tar.TypeLink, link: "bin/busybox"},
				{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
				{name: "dev/loop0", typ: tar.TypeBlock, mode: 0o660, major: 7, minor: 0, gid: 6},
				{name: "run/fifo", typ: tar.TypeFifo, mode: 0o600, uid: 3},
				{name: "implied/deep/file", typ: tar.TypeReg, mode: 0o600, data: strings.Repeat("x", 3<<20)},
			}
			mustApply(t, root, entries, mode.opts...)
			checkModes(t, root, map[string]uint32{
				"bin": unix.S_IFDIR | 0o750, "bin/su": unix.S_IFREG | 0o4755, "bin/wall": unix.S_IFREG | 0o2755,
				"tmp": unix.S_IFDIR | 0o1777, "bin/sh": unix.S_IFLNK | 0o777, "dev/null": unix.S_IFCHR | 0o666,
				"dev/loop0": unix.S_IFBLK | 0o660, "run/fifo": unix.S_IFIFO | 0o600,
				"implied": unix.S_IFDIR | 0o755, "implied/deep": unix.S_IFDIR | 0o755,
			})
			checkOwner(t, root, "bin", 11, 12)
			checkOwner(t, root, "bin/ping", 1000, 1000)
			checkOwner(t, root, "bin/sh", 7, 8)
			checkOwner(t, root, "run/fifo", 3, 0)
			if got := describeXattrs(filepath.Join(root, "bin/ping")); !strings.Contains(got, `security.capability=`) ||
				!strings.Contains(got, `user.note="hi"`) || !strings.Contains(got, `trusted.t="x"`) {
				t.Errorf("bin/ping xattrs %s", got)
			}
			if target, _ := os.Readlink(filepath.Join(root, "bin/sh")); target != "/bin/busybox" {
				t.Errorf("bin/sh -> %q", target)
			}
			if a, b := lstat(t, filepath.Join(root, "bin/ash")), lstat(t, filepath.Join(root, "bin/busybox")); a.Ino != b.Ino || a.Nlink != 2 {
				t.Errorf("bin/ash is not a hardlink of bin/busybox")
			}
			if st := lstat(t, filepath.Join(root, "dev/null")); unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
				t.Errorf("dev/null rdev %d,%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
			}
			if got := len(readFile(t, filepath.Join(root, "implied/deep/file"))); got != 3<<20 {
				t.Errorf("large file has %d bytes", got)
			}
			for _, p := range []string{"bin", "bin/su"} {
				if st := lstat(t, filepath.Join(root, p)); st.Mtim.Sec != old.Unix() || st.Mtim.Nsec != 700 {
					t.Errorf("%s mtime %d.%09d, want %d.000000700 (directories after their children)", p, st.Mtim.Sec, st.Mtim.Nsec, old.Unix())
				}
			}
			if st := lstat(t, filepath.Join(root, "bin/sh")); st.Mtim.Sec != testTime.Unix() {
				t.Errorf("symlink mtime %d not set", st.Mtim.Sec)
			}
		})
	}
}

// capNetRaw is a VFS_CAP_REVISION_2 security.capability granting cap_net_raw.
var capNetRaw = string([]byte{0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})

func checkModes(t *testing.T, root string, want map[string]uint32) {
	t.Helper()
	for p, m := range want {
		if st := lstat(t, filepath.Join(root, p)); st.Mode != m {
			t.Errorf("%s: mode %o, want %o", p, st.Mode, m)
		}
	}
}

func checkOwner(t *testing.T, root, p string, uid, gid uint32) {
	t.Helper()
	if st := lstat(t, filepath.Join(root, p)); st.Uid != uid || st.Gid != gid {
		t.Errorf("%s: owner %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, gid)
	}
}

func TestApplyReplaces(t *testing.T) {
	root := t.TempDir()
	mustApply(t, root, []entry{
		dir("d/"), reg("d/keep", "lower"), reg("f", "file"), dir("gone/"), reg("gone/x", "x"), symlink("l", "d"),
	})
	mustApply(t, root, []entry{
		{name: "d/", typ: tar.TypeDir, mode: 0o700}, // merges, keeps d/keep
		dir("f/"),                 // a directory replaces a file
		reg("gone", "now a file"), // a file replaces a whole tree
		reg("l", "not a symlink"),
		reg("d/keep", "upper"),
	})
	checkModes(t, root, map[string]uint32{"d": unix.S_IFDIR | 0o700, "f": unix.S_IFDIR | 0o755})
	if got := readFile(t, filepath.Join(root, "d/keep")); got != "upper" {
		t.Errorf("d/keep = %q", got)
	}
	if got := readFile(t, filepath.Join(root, "gone")); got != "now a file" {
		t.Errorf("gone = %q", got)
	}
	if got := readFile(t, filepath.Join(root, "l")); got != "not a symlink" {
		t.Errorf("l = %q", got)
	}
}

func TestApplyWhiteouts(t *testing.T) {
	lower := []entry{
		dir("a/"), reg("a/1", "1"), reg("a/2", "2"), dir("a/sub/"), reg("a/sub/deep", "d"),
		dir("o/"), reg("o/lower", "l"), dir("o/keepdir/"), reg("o/keepdir/lowerchild", "l"),
		reg("top", "t"),
	}
	for _, mode := range resolverModes {
		t.Run(mode.name, func(t *testing.T) {
			root := t.TempDir()
			mustApply(t, root, lower, mode.opts...)
			mustApply(t, root, []entry{
				whiteout("a/.wh.1"),
				whiteout("a/.wh.sub"),
				whiteout(".wh.top"),
				whiteout("a/.wh.missing"),
				whiteout("nodir/.wh.x"),
				reg("o/early", "same layer, before the marker"),
				dir("o/keepdir/"),
				whiteout("o/.wh..wh..opq"),
				reg("o/late", "same layer, after the marker"),
				reg("a/new", "n"),
				whiteout("a/.wh.new"), // same layer: spared
				whiteout("a/.wh..wh.plnk"),
			}, mode.opts...)
			for _, gone := range []string{"a/1", "a/sub", "top", "o/lower", "o/keepdir/lowerchild", "nodir"} {
				if exists(filepath.Join(root, gone)) {
					t.Errorf("%s survived its whiteout", gone)
				}
			}
			for _, kept := range []string{"a/2", "a/new", "o/early", "o/late", "o/keepdir"} {
				if !exists(filepath.Join(root, kept)) {
					t.Errorf("%s was removed", kept)
				}
			}
		})
	}
}

func TestApplyOverlayWhiteouts(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	mustApply(t, root, []entry{
		whiteout("a/.wh.gone"),
		dir("o/"),
		whiteout("o/.wh..wh..opq"),
		{name: "f", typ: tar.TypeReg, mode: 0o644, xattrs: map[string]string{
			"trusted.overlay.redirect": "/etc", "user.overlay.origin": "x", "user.ok": "1"}},
		reg("same", "kept"),
		whiteout(".wh.same"),
	}, WithConvertWhiteout(true))
	st := lstat(t, filepath.Join(root, "a/gone"))
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("a/gone: mode %o rdev %d, want a 0/0 character device", st.Mode, st.Rdev)
	}
	if got := describeXattrs(filepath.Join(root, "o")); got != `{trusted.overlay.opaque="y"}` {
		t.Errorf("o xattrs %s", got)
	}
	if got := describeXattrs(filepath.Join(root, "f")); got != `{user.ok="1"}` {
		t.Errorf("f xattrs %s: overlay-private xattrs must be dropped", got)
	}
	if readFile(t, filepath.Join(root, "same")) != "kept" {
		t.Error("same-layer whiteout replaced the file")
	}
}

func TestApplyWithoutChown(t *testing.T) {
	root := t.TempDir()
	mustApply(t, root, []entry{{name: "f", typ: tar.TypeReg, mode: 0o640, uid: 4242, gid: 4243}}, WithChown(false))
	checkOwner(t, root, "f", uint32(os.Geteuid()), uint32(os.Getegid()))
	checkModes(t, root, map[string]uint32{"f": unix.S_IFREG | 0o640})
}

func TestApplyBytesRead(t *testing.T) {
	blob := buildTar(t, reg("a", "hello"), dir("d/"))
	n, err := Apply(context.Background(), t.TempDir(), bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(blob)) {
		t.Errorf("Apply read %d bytes, the tar has %d", n, len(blob))
	}
}

func TestApplyErrors(t *testing.T) {
	root := t.TempDir()
	err := apply(t, root, []entry{{name: "vol", typ: 'V'}})
	if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), `entry "vol"`) {
		t.Errorf("unsupported type: %v", err)
	}
	blob := buildTar(t, reg("a", strings.Repeat("x", 4096)))
	_, err = Apply(context.Background(), root, bytes.NewReader(blob[:2048]))
	if err == nil || !strings.Contains(err.Error(), `entry "a": read contents`) {
		t.Errorf("truncated tar: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Apply(ctx, root, bytes.NewReader(blob)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if _, err := Apply(context.Background(), filepath.Join(root, "missing"), bytes.NewReader(blob)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing root: %v", err)
	}
	err = apply(t, root, []entry{hardlink("h", "nothere")})
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), `apply layer: entry "h": hardlink to "nothere"`) {
		t.Errorf("dangling hardlink: %v", err)
	}
}

// TestApplyManyDirectories crosses the directory cache's bound and comes
// back to early directories after it was flushed.
func TestApplyManyDirectories(t *testing.T) {
	root := t.TempDir()
	var entries []entry
	for i := range 3 * dirCacheMax {
		entries = append(entries, reg(filepath.Join("d", string(rune('a'+i%26)), strings.Repeat("x", i%7+1), "f"), "1"))
	}
	entries = append(entries, reg("d/a/x/again", "2"), whiteout("d/a/.wh.x"), reg("d/b/x/after", "3"))
	mustApply(t, root, entries)
	if exists(filepath.Join(root, "d/a/x")) || !exists(filepath.Join(root, "d/b/x/after")) {
		t.Error("cache flush lost track of directories")
	}
}

// gnuSparseTar hand-writes an old-GNU sparse entry (archive/tar cannot write
// one): a file of realSize bytes holding data at offset dataOff, holes
// elsewhere.
func gnuSparseTar(name string, realSize, dataOff int64, data []byte) []byte {
	hdr := make([]byte, 512)
	octal := func(b []byte, v int64) { copy(b, fmt.Sprintf("%0*o", len(b)-1, v)) }
	copy(hdr[0:], name)
	octal(hdr[100:108], 0o644)
	octal(hdr[108:116], 0)
	octal(hdr[116:124], 0)
	octal(hdr[124:136], int64(len(data)))
	octal(hdr[136:148], testTime.Unix())
	hdr[156] = tar.TypeGNUSparse
	copy(hdr[257:], "ustar  \x00")
	octal(hdr[386:398], dataOff)
	octal(hdr[398:410], int64(len(data)))
	octal(hdr[483:495], realSize)
	copy(hdr[148:156], "        ")
	var sum int64
	for _, c := range hdr {
		sum += int64(c)
	}
	copy(hdr[148:156], fmt.Sprintf("%06o\x00 ", sum))
	out := append(hdr, data...)
	out = append(out, make([]byte, (512-len(data)%512)%512)...)
	return append(out, make([]byte, 1024)...)
}

func TestApplySparse(t *testing.T) {
	root := t.TempDir()
	const size, off = 64 << 20, 40 << 20
	blob := gnuSparseTar("sparse", size, off, bytes.Repeat([]byte{'x'}, 4096))
	if _, err := Apply(context.Background(), root, bytes.NewReader(blob)); err != nil {
		t.Fatal(err)
	}
	st := lstat(t, filepath.Join(root, "sparse"))
	if st.Size != size || st.Blocks*512 > 1<<20 {
		t.Errorf("size %d, %d bytes allocated: want %d bytes, sparse", st.Size, st.Blocks*512, size)
	}
	f, err := os.Open(filepath.Join(root, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, 8192)
	if _, err := f.ReadAt(got, off-4096); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:4096], make([]byte, 4096)) || !bytes.Equal(got[4096:], bytes.Repeat([]byte{'x'}, 4096)) {
		t.Error("sparse contents wrong")
	}

	_, err = Apply(context.Background(), t.TempDir(), bytes.NewReader(blob), WithMaxUnpackedSize(16<<20))
	if !errdefs.IsResourceExhausted(err) || !strings.Contains(err.Error(), `entry "sparse"`) {
		t.Errorf("limit: got %v", err)
	}
}

// TestApplySameLayerThroughSymlink checks that whiteouts recognise this
// layer's entries by where they landed, not by the name they came through.
func TestApplySameLayerThroughSymlink(t *testing.T) {
	for _, mode := range resolverModes {
		t.Run(mode.name, func(t *testing.T) {
			root := t.TempDir()
			mustApply(t, root, []entry{dir("d/"), reg("d/lower", "l")}, mode.opts...)
			mustApply(t, root, []entry{
				symlink("up", "../../.."), reg("up/f", "via root"),
				symlink("dl", "/d"), reg("dl/new", "via d"),
				whiteout(".wh.f"), whiteout("d/.wh..wh..opq"),
			}, mode.opts...)
			for _, kept := range []string{"f", "d/new"} {
				if !exists(filepath.Join(root, kept)) {
					t.Errorf("%s, unpacked by this layer, was removed", kept)
				}
			}
			if exists(filepath.Join(root, "d/lower")) {
				t.Error("d/lower survived the opaque marker")
			}
		})
	}
}
