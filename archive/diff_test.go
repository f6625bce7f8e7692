package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// baseLayers build a lower tree with every kind of entry.
func baseLayers() [][]entry {
	l1 := []entry{
		{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "bin/busybox", typ: tar.TypeReg, mode: 0o755, data: strings.Repeat("busybox", 1000)},
		hardlink("bin/sh2", "bin/busybox"),
		symlink("bin/sh", "busybox"),
		{name: "bin/ping", typ: tar.TypeReg, mode: 0o4755, data: "ping", xattrs: map[string]string{"security.capability": capNetRaw}},
		{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		{name: "etc/shadow", typ: tar.TypeReg, mode: 0o640, gid: 42, data: "root:*:"},
		{name: "etc/conf", typ: tar.TypeReg, mode: 0o644, data: "a=1", xattrs: map[string]string{"user.k": "v", "trusted.t": "t"}},
		{name: "dev/", typ: tar.TypeDir, mode: 0o755},
		{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		{name: "var/lib/deep/a/b/", typ: tar.TypeDir, mode: 0o700, uid: 99, gid: 99},
		{name: "var/lib/deep/a/b/file", typ: tar.TypeReg, mode: 0o600, uid: 99, data: "deep"},
		{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
		reg("home/user/.profile", "export A=1"),
		reg("home/user/doomed/x", "x"),
		reg("replace/file-becomes-dir", "f"),
		reg("replace/dir-becomes-file/child", "c"),
		reg("unchanged/big", strings.Repeat("0123456789", 100000)),
	}
	l2 := []entry{
		whiteout("home/user/.wh.doomed"),
		reg("etc/added-by-l2", "l2"),
		whiteout("etc/.wh.nothing"),
	}
	return [][]entry{l1, l2}
}

// mutate changes a tree the way a container would; overlay skips the
// changes whose result overlayfs reports differently (hardlinks to lower
// files break on copy-up).
func mutate(t *testing.T, root string, overlay bool) {
	t.Helper()
	p := func(rel string) string { return filepath.Join(root, rel) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(p("etc/conf"), []byte("a=2"), 0o644)) // same size, new content
	sec := time.Unix(lstat(t, p("etc/conf")).Mtim.Sec, 0)
	must(os.Chtimes(p("etc/conf"), sec, sec)) // whole-second mtime: contents decide
	must(os.Chmod(p("etc/shadow"), 0o600))
	must(os.Lchown(p("bin/sh"), 5, 5))
	must(os.MkdirAll(p("opt/new/deeper"), 0o750))
	must(os.WriteFile(p("opt/new/deeper/file"), []byte("new"), 0o640))
	must(os.Remove(p("etc/added-by-l2")))
	must(os.RemoveAll(p("var/lib/deep/a")))
	must(os.Remove(p("replace/file-becomes-dir")))
	must(os.MkdirAll(p("replace/file-becomes-dir/sub"), 0o755))
	must(os.WriteFile(p("replace/file-becomes-dir/sub/f"), []byte("f"), 0o644))
	must(os.RemoveAll(p("replace/dir-becomes-file")))
	must(os.WriteFile(p("replace/dir-becomes-file"), []byte("now a file"), 0o644))
	must(os.Remove(p("bin/sh")))
	must(os.Symlink("/bin/busybox", p("bin/sh")))
	must(unix.Lsetxattr(p("bin/ping"), "user.added", []byte("1"), 0))
	must(unix.Lremovexattr(p("etc/conf"), "user.k"))
	must(unix.Mkfifo(p("tmp/fifo"), 0o600))
	must(unix.Mknod(p("dev/zero"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))))
	must(os.Chmod(p("home/user"), 0o700))
	must(os.WriteFile(p("home/user/.profile"), []byte("export A=22"), 0o644))
	if !overlay {
		must(os.Link(p("bin/busybox"), p("bin/sh3")))
		must(os.WriteFile(p("newlinks-a"), []byte("ab"), 0o644))
		must(os.Link(p("newlinks-a"), p("newlinks-b")))
	}
}

func applyLayers(t *testing.T, root string, layers [][]entry, opts ...ApplyOpt) {
	t.Helper()
	for _, l := range layers {
		mustApply(t, root, l, opts...)
	}
}

// copyTree copies src into a new directory through WriteDiff and Apply.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	var buf bytes.Buffer
	if err := WriteDiff(context.Background(), &buf, "", src); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(context.Background(), dst, &buf); err != nil {
		t.Fatal(err)
	}
	if got, want := describeTree(t, dst), describeTree(t, src); got != want {
		t.Fatalf("copy differs from source:\n%s", lineDiff(want, got))
	}
	return dst
}

func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for _, l := range w {
		if !slices.Contains(g, l) {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}

func tarNames(t *testing.T, blob []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(blob))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
	}
}

func TestWriteDiffRoundTrip(t *testing.T) {
	requireRoot(t)
	lower := t.TempDir()
	applyLayers(t, lower, baseLayers())
	upper := copyTree(t, lower)
	mutate(t, upper, false)

	var diff bytes.Buffer
	if err := WriteDiff(context.Background(), &diff, lower, upper); err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, diff.Bytes())
	for _, want := range []string{"etc/", "etc/conf", "etc/.wh.added-by-l2", "var/", "var/lib/", "var/lib/deep/",
		"var/lib/deep/.wh.a", "opt/", "opt/new/deeper/file", "bin/sh3", "bin/busybox", "bin/sh2", "home/user/"} {
		if !slices.Contains(names, want) {
			t.Errorf("diff lacks %q; has %q", want, names)
		}
	}
	for _, unwanted := range []string{"unchanged/", "unchanged/big", "dev/null"} {
		if slices.Contains(names, unwanted) {
			t.Errorf("diff has unchanged %q", unwanted)
		}
	}
	target := copyTree(t, lower)
	if _, err := Apply(context.Background(), target, bytes.NewReader(diff.Bytes())); err != nil {
		t.Fatal(err)
	}
	if got, want := describeTree(t, target), describeTree(t, upper); got != want {
		t.Fatalf("lower + diff differs from upper:\n%s", lineDiff(want, got))
	}
	var again bytes.Buffer
	if err := WriteDiff(context.Background(), &again, lower, upper); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), diff.Bytes()) {
		t.Error("WriteDiff is not reproducible")
	}
}

func TestWriteDiffNoChanges(t *testing.T) {
	lower := t.TempDir()
	applyLayers(t, lower, [][]entry{{reg("a/b/c", "x"), symlink("l", "a")}})
	var diff bytes.Buffer
	if err := WriteDiff(context.Background(), &diff, lower, copyTree(t, lower)); err != nil {
		t.Fatal(err)
	}
	if names := tarNames(t, diff.Bytes()); len(names) != 0 {
		t.Errorf("identical trees gave entries %q", names)
	}
}

func TestWriteDiffErrors(t *testing.T) {
	upper := t.TempDir()
	if err := os.WriteFile(filepath.Join(upper, ".wh.x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := WriteDiff(context.Background(), io.Discard, "", upper)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), ".wh.x") {
		t.Errorf("reserved name: %v", err)
	}
	err = WriteDiff(context.Background(), io.Discard, filepath.Join(upper, "missing"), upper)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing lower: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WriteDiff(ctx, io.Discard, "", upper); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// overlayMount mounts lower and upper at a new directory until the test ends.
func overlayMount(t *testing.T, lower, upper string) string {
	t.Helper()
	work, merged := t.TempDir(), t.TempDir()
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work + ",index=off,redirect_dir=off,metacopy=off"
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Fatalf("overlay mount (the tests need root and overlayfs): %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(merged, 0); err != nil {
			t.Errorf("unmount %s: %v", merged, err)
		}
	})
	return merged
}

func TestWriteDiffOverlayRoundTrip(t *testing.T) {
	requireRoot(t)
	lower := t.TempDir()
	applyLayers(t, lower, baseLayers())
	upper := t.TempDir()
	merged := overlayMount(t, lower, upper)
	mutate(t, merged, true)
	if err := os.RemoveAll(filepath.Join(merged, "home")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(merged, "home/fresh"), 0o755); err != nil { // opaque
		t.Fatal(err)
	}
	want := describeTree(t, merged)

	var diff bytes.Buffer
	if err := WriteDiffOverlay(context.Background(), &diff, upper); err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, diff.Bytes())
	for _, n := range []string{"etc/.wh.added-by-l2", "home/.wh..wh..opq", "var/lib/deep/.wh.a"} {
		if !slices.Contains(names, n) {
			t.Errorf("overlay diff lacks %q; has %q", n, names)
		}
	}
	target := copyTree(t, lower)
	if _, err := Apply(context.Background(), target, bytes.NewReader(diff.Bytes())); err != nil {
		t.Fatal(err)
	}
	if got := describeTree(t, target); got != want {
		t.Fatalf("lower + overlay diff differs from the merged view:\n%s", lineDiff(want, got))
	}

	// The same layer unpacked as an upperdir gives the same merged view.
	upper2 := t.TempDir()
	if _, err := Apply(context.Background(), upper2, bytes.NewReader(diff.Bytes()), WithConvertWhiteout(true)); err != nil {
		t.Fatal(err)
	}
	if got := describeTree(t, overlayMount(t, lower, upper2)); got != want {
		t.Fatalf("overlay applier's upperdir mounts differently:\n%s", lineDiff(want, got))
	}
}

func TestWriteDiffOverlayRejectsRedirect(t *testing.T) {
	requireRoot(t)
	upper := t.TempDir()
	if err := os.Mkdir(filepath.Join(upper, "moved"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(upper, "moved"), "trusted.overlay.redirect", []byte("/orig"), 0); err != nil {
		t.Fatal(err)
	}
	err := WriteDiffOverlay(context.Background(), io.Discard, upper)
	if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "trusted.overlay.redirect") {
		t.Errorf("got %v", err)
	}
}
