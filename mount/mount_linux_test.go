package mount

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("mounting needs root: run the tests as root (make test does)")
	}
}

// mountTemp mounts mounts on a new t.TempDir and unmounts it in cleanup,
// which runs before the directory's removal.
func mountTemp(t *testing.T, mounts ...Mount) string {
	t.Helper()
	target := t.TempDir()
	t.Cleanup(func() {
		if err := UnmountMounts(mounts, target, 0); err != nil {
			t.Errorf("unmount %s: %v", target, err)
		}
		assertNoMounts(t, target)
	})
	if err := All(mounts, target); err != nil {
		t.Fatal(err)
	}
	return target
}

func assertNoMounts(t *testing.T, dir string) {
	t.Helper()
	left, err := MountPointsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("mounts left under %s: %q", dir, left)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBindMounts(t *testing.T) {
	requireRoot(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), "a")

	rw := mountTemp(t, Mount{Type: "bind", Source: src, Options: []string{"rw", "rbind"}})
	writeFile(t, filepath.Join(rw, "b"), "b")
	if got := readFile(t, filepath.Join(src, "b")); got != "b" {
		t.Errorf("write through rw bind: source has %q", got)
	}

	ro := mountTemp(t, Mount{Type: "bind", Source: src, Options: []string{"ro", "rbind"}})
	if got := readFile(t, filepath.Join(ro, "a")); got != "a" {
		t.Errorf("read through ro bind: %q", got)
	}
	err := os.WriteFile(filepath.Join(ro, "c"), nil, 0o644)
	if !errors.Is(err, unix.EROFS) {
		t.Errorf("write through ro bind: got %v, want EROFS", err)
	}
	writeFile(t, filepath.Join(src, "c"), "source stays writable")
}

func TestRecursiveBind(t *testing.T) {
	requireRoot(t)
	src, inner := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(inner, "inner"), "x")
	if err := os.Mkdir(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	sub := Mount{Type: "bind", Source: inner, Target: "sub", Options: []string{"bind"}}
	if err := sub.Mount(src); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = UnmountAll(filepath.Join(src, "sub"), 0) })

	rbind := mountTemp(t, Mount{Type: "bind", Source: src, Options: []string{"rbind"}})
	if _, err := os.Stat(filepath.Join(rbind, "sub", "inner")); err != nil {
		t.Errorf("rbind does not carry the submount: %v", err)
	}
	bind := mountTemp(t, Mount{Type: "bind", Source: src, Options: []string{"bind"}})
	if _, err := os.Stat(filepath.Join(bind, "sub", "inner")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("plain bind carries the submount: %v", err)
	}
}

func TestTargetBelowMountPoint(t *testing.T) {
	requireRoot(t)
	base, extra := t.TempDir(), t.TempDir()
	if err := os.Mkdir(filepath.Join(base, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(extra, "x"), "extra")
	target := mountTemp(t,
		Mount{Type: "bind", Source: base, Options: []string{"rbind"}},
		Mount{Type: "bind", Source: extra, Target: "/data", Options: []string{"ro", "rbind"}},
	)
	if got := readFile(t, filepath.Join(target, "data", "x")); got != "extra" {
		t.Errorf("submount content %q", got)
	}
	if err := os.Symlink("/etc", filepath.Join(base, "escape")); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"escape", "../../.."} {
		m := Mount{Type: "bind", Source: extra, Target: sub, Options: []string{"bind"}}
		err := m.Mount(target)
		if sub == "escape" && !errdefs.IsInvalidArgument(err) {
			t.Errorf("target through a symlink out of the root: got %v, want InvalidArgument", err)
		}
		if sub != "escape" {
			// ".." is confined lexically: this mounts on target itself.
			if err != nil {
				t.Fatal(err)
			}
			if err := Unmount(target, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// longLayers makes n lowerdirs under a parent with a long name, so that
// their absolute paths overflow a page while relative ones do not.
func longLayers(t *testing.T, n int) []string {
	parent := filepath.Join(t.TempDir(), strings.Repeat("p", 200))
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = filepath.Join(parent, fmt.Sprint(i), "fs")
		if err := os.MkdirAll(dirs[i], 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dirs[i], fmt.Sprintf("f%d", i)), fmt.Sprint(i))
	}
	writeFile(t, filepath.Join(dirs[0], "shadowed"), "top")
	writeFile(t, filepath.Join(dirs[n-1], "shadowed"), "bottom")
	return dirs
}

func TestOverlayLongLowerdir(t *testing.T) {
	requireRoot(t)
	dirs := longLayers(t, 40)
	opt := "lowerdir=" + strings.Join(dirs, ":")
	if len(opt) < pageSize {
		t.Fatalf("options of %d bytes do not test the page limit", len(opt))
	}
	upper, work := t.TempDir(), t.TempDir()
	target := mountTemp(t, Mount{Type: "overlay", Source: "overlay",
		Options: []string{"index=off", "workdir=" + work, "upperdir=" + upper, opt}})
	if got := readFile(t, filepath.Join(target, "shadowed")); got != "top" {
		t.Errorf("first lowerdir does not win: %q", got)
	}
	if got := readFile(t, filepath.Join(target, "f39")); got != "39" {
		t.Errorf("last lowerdir: %q", got)
	}
	wd, _ := os.Getwd()
	if !strings.HasPrefix(wd, "/") || wd == filepath.Dir(dirs[0]) {
		t.Errorf("process working directory changed to %q", wd)
	}
}

func TestOverlayTooLong(t *testing.T) {
	requireRoot(t)
	var dirs []string
	for i := range 24 {
		// Names of 200 bytes each: relative paths are no shorter.
		d := filepath.Join(t.TempDir(), strings.Repeat(fmt.Sprint(i%10), 200))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	m := Mount{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + strings.Join(dirs, ":")}}
	target := t.TempDir()
	err := m.Mount(target)
	if err == nil {
		_ = UnmountAll(target, 0)
		t.Fatal("mount with options over a page succeeded")
	}
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "limit") {
		t.Errorf("got %v, want InvalidArgument naming the limit", err)
	}
}

func TestUnmountAll(t *testing.T) {
	requireRoot(t)
	a, b, target := t.TempDir(), t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(a, "f"), "a")
	writeFile(t, filepath.Join(b, "f"), "b")
	for _, src := range []string{a, b} {
		m := Mount{Type: "bind", Source: src, Options: []string{"bind"}}
		if err := m.Mount(target); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = UnmountAll(target, 0) })
	if got := readFile(t, filepath.Join(target, "f")); got != "b" {
		t.Errorf("top of the stack shows %q", got)
	}
	if points, _ := MountPointsUnder(target); len(points) != 2 {
		t.Errorf("MountPointsUnder = %q, want the target twice", points)
	}
	if err := UnmountAll(target, 0); err != nil {
		t.Fatal(err)
	}
	assertNoMounts(t, target)
	if err := UnmountAll(target, 0); err != nil {
		t.Errorf("not a mount point: %v", err)
	}
	if err := UnmountAll(filepath.Join(target, "missing"), 0); err != nil {
		t.Errorf("missing path: %v", err)
	}
}

func TestWithTempMount(t *testing.T) {
	requireRoot(t)
	location := t.TempDir()
	if err := SetTempMountLocation(location); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = SetTempMountLocation(os.TempDir()) })
	src, extra := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(src, "f"), "content")
	mounts := []Mount{{Type: "bind", Source: src, Options: []string{"ro", "rbind"}}}

	ctx := context.Background()
	err := WithTempMount(ctx, mounts, func(root string) error {
		if !strings.HasPrefix(root, location) {
			t.Errorf("mount point %s is not under %s", root, location)
		}
		if got := readFile(t, filepath.Join(root, "f")); got != "content" {
			t.Errorf("read %q", got)
		}
		// fn's own mounts are unmounted too.
		m := Mount{Type: "bind", Source: extra, Options: []string{"bind"}}
		return m.Mount(root)
	})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := WithTempMount(ctx, mounts, func(string) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("fn's error: got %v", err)
	}
	bad := []Mount{mounts[0], {Type: "bind", Source: filepath.Join(src, "missing"), Options: []string{"bind"}}}
	if err := WithTempMount(ctx, bad, func(string) error { return nil }); err == nil {
		t.Error("failed mount: no error")
	}
	entries, err := os.ReadDir(location)
	if err != nil || len(entries) != 0 {
		t.Errorf("temporary mount points left: %v %v", entries, err)
	}
	assertNoMounts(t, location)
}
