package testsuite

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-dev/berth/snapshots"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// reference returns a plain directory that starts like an empty snapshot.
func (f *fixture) reference() string {
	f.t.Helper()
	dir := f.t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	return dir
}

// testBasic walks one snapshot through its life: prepare, mount, write,
// unmount, commit, and a child over it.
func testBasic(t *testing.T, f *fixture) {
	labels := map[string]string{"berth.test/label": "v"}
	mounts := f.prepare("active", "", snapshots.WithLabels(labels))
	info := f.stat("active")
	if info.Kind != snapshots.KindActive || info.Name != "active" || info.Parent != "" ||
		info.Labels["berth.test/label"] != "v" || info.Created.IsZero() || info.Updated.IsZero() {
		t.Errorf("stat of a new active snapshot: %+v", info)
	}
	again, err := f.sn.Mounts(f.ctx, "active")
	if err != nil || !reflect.DeepEqual(again, mounts) {
		t.Errorf("Mounts: %+v, %v; Prepare returned %+v", again, err, mounts)
	}

	ref := f.reference()
	changes := []change{writeFile("/a", "a", 0o644), mkdir("/d", 0o755), writeFile("/d/b", "b", 0o600)}
	apply(t, ref, changes)
	target := f.mount(mounts)
	apply(t, target, changes)
	f.unmount(target)
	f.commit("committed", "active")

	info = f.stat("committed")
	if info.Kind != snapshots.KindCommitted || info.Parent != "" || len(info.Labels) != 0 {
		t.Errorf("stat after commit: %+v (a commit takes no labels from its active snapshot)", info)
	}
	if _, err := f.sn.Stat(f.ctx, "active"); !errdefs.IsNotFound(err) {
		t.Errorf("stat of the committed key: %v, want NotFound", err)
	}
	want := readTree(t, ref)
	f.checkTree("committed", want)

	child := f.mount(f.prepare("child", "committed"))
	if info := f.stat("child"); info.Parent != "committed" || info.Kind != snapshots.KindActive {
		t.Errorf("stat of child: %+v", info)
	}
	if diff := want.diff(readTree(t, child)); diff != "" {
		t.Errorf("child does not start with its parent's tree:\n%s", diff)
	}
	apply(t, child, []change{writeFile("/a", "changed", 0o644), remove("/d")})
	f.unmount(child)
	f.checkTree("committed", want)
}

// testLayerChain commits four layers of changes, deletions included, and
// checks every layer's tree, then checks them all again: committed
// snapshots never change.
func testLayerChain(t *testing.T, f *fixture) {
	layers := []struct {
		name    string
		changes []change
	}{
		{"l1", []change{
			writeFile("/a", "a1", 0o644), writeFile("/b", "b1", 0o644), mkdir("/dir", 0o755),
			writeFile("/dir/x", "x", 0o644), mkdir("/dir/sub", 0o700), writeFile("/dir/sub/y", "y", 0o600),
			writeFile("/keep", "k", 0o644), symlink("a", "/link"), writeFile("/exec", "#!/bin/sh\n", 0o4755),
			writeFile("/owned", "o", 0o640), chown("/owned", 1000, 1001), setxattr("/a", "user.color", "blue"),
		}},
		{"l2", []change{
			writeFile("/a", "a2", 0o644), remove("/b"), remove("/dir/sub"), writeFile("/dir/z", "z", 0o644),
			chmod("/keep", 0o600), chmod("/", 0o750), chown("/dir", 1000, 1000),
		}},
		{"l3", []change{
			remove("/dir"), mkdir("/dir", 0o711), writeFile("/dir/new", "n", 0o644),
			rename("/a", "/a-moved"), hardlink("/keep", "/keep-link"), mkdir("/empty", 0o755),
		}},
		{"l4", []change{
			remove("/a-moved"), writeFile("/b", "b4", 0o644), remove("/link"), symlink("/dir/new", "/link"),
			remove("/empty"), writeFile("/empty", "a file now", 0o644),
			remove("/keep-link"), mkdir("/keep-link", 0o755), writeFile("/keep-link/inside", "i", 0o644),
		}},
	}
	ref := f.reference()
	trees := map[string]tree{}
	parent := ""
	for _, l := range layers {
		apply(t, ref, l.changes)
		trees[l.name] = readTree(t, ref)
		f.layer(l.name, parent, l.changes...)
		f.checkTree(l.name, trees[l.name])
		if info := f.stat(l.name); info.Parent != parent {
			t.Errorf("%s: parent %q, want %q", l.name, info.Parent, parent)
		}
		parent = l.name
	}
	for _, l := range layers {
		f.checkTree(l.name, trees[l.name])
	}
}

// testSpecialFiles carries device nodes, a fifo, a socket and hard links
// through a layer.
func testSpecialFiles(t *testing.T, f *fixture) {
	changes := []change{
		mknod("/fifo", unix.S_IFIFO|0o640, 0),
		mknod("/null", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))),
		mknod("/sock", unix.S_IFSOCK|0o755, 0),
		writeFile("/h1", "linked", 0o644), hardlink("/h1", "/h2"),
	}
	ref := f.reference()
	apply(t, ref, changes)
	f.layer("special", "", changes...)
	f.layer("above", "special", writeFile("/other", "o", 0o644))
	apply(t, ref, []change{writeFile("/other", "o", 0o644)})
	f.checkTree("above", readTree(t, ref))

	target := f.mount(f.view("look", "above"))
	var st1, st2 syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(target, "h1"), &st1); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Lstat(filepath.Join(target, "h2"), &st2); err != nil {
		t.Fatal(err)
	}
	if st1.Ino != st2.Ino {
		t.Errorf("hard links were split: inodes %d and %d", st1.Ino, st2.Ino)
	}
}

// testRootPermission checks the root of a new tree, and that a child's
// root looks like its parent's.
func testRootPermission(t *testing.T, f *fixture) {
	target := f.mount(f.prepare("empty", ""))
	fi, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o755 {
		t.Errorf("root of a new snapshot: mode %#o, want 0755", mode)
	}
	apply(t, target, []change{chmod("/", 0o700), chown("/", 1000, 1000)})
	f.unmount(target)
	f.commit("private", "empty")
	child := f.mount(f.prepare("child", "private"))
	e, err := readEntry(child)
	if err != nil {
		t.Fatal(err)
	}
	if e.mode != 0o700 || e.uid != 1000 || e.gid != 1000 {
		t.Errorf("root of a child: %+v, want mode 0700 owned by 1000:1000 as its parent", e)
	}
}

// testViews mounts views over no parent, one and two layers: read-only,
// with the parent's content; views cannot be committed, and only
// committed snapshots can be viewed.
func testViews(t *testing.T, f *fixture) {
	f.layer("base", "", writeFile("/f", "1", 0o644))
	f.layer("top", "base", writeFile("/g", "2", 0o644))
	for _, tc := range []struct {
		key, parent string
		files       []string
	}{{"view-empty", "", nil}, {"view-one", "base", []string{"/f"}}, {"view-two", "top", []string{"/f", "/g"}}} {
		m := f.view(tc.key, tc.parent)
		if info := f.stat(tc.key); info.Kind != snapshots.KindView || info.Parent != tc.parent {
			t.Errorf("%s: stat %+v", tc.key, info)
		}
		if again, err := f.sn.Mounts(f.ctx, tc.key); err != nil || !reflect.DeepEqual(again, m) {
			t.Errorf("%s: Mounts %+v, %v; View returned %+v", tc.key, again, err, m)
		}
		target := f.mount(m)
		for _, p := range tc.files {
			if _, err := os.Stat(at(target, p)); err != nil {
				t.Errorf("%s: %v", tc.key, err)
			}
		}
		if err := os.WriteFile(at(target, "/new"), nil, 0o644); err == nil {
			t.Errorf("%s: a view is writable", tc.key)
		}
		f.unmount(target)
		err := f.sn.Commit(f.ctx, "from-"+tc.key, tc.key)
		if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), strconv.Quote(tc.key)) {
			t.Errorf("%s: commit of a view: %v, want FailedPrecondition naming it", tc.key, err)
		}
		f.remove(tc.key)
	}
	f.prepare("active", "top")
	if _, err := f.sn.View(f.ctx, "view-of-active", "active"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("view of an active snapshot: %v, want InvalidArgument", err)
	}
	f.view("v", "base")
	if _, err := f.sn.Prepare(f.ctx, "over-view", "v"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("prepare over a view: %v, want InvalidArgument", err)
	}
}

// testErrors checks each error class and that the message names the key;
// failed calls change nothing.
func testErrors(t *testing.T, f *fixture) {
	f.layer("committed", "")
	f.prepare("active", "")
	f.view("view", "committed")
	ctx := f.ctx
	prepare := func(key, parent string) error { _, err := f.sn.Prepare(ctx, key, parent); return err }
	view := func(key, parent string) error { _, err := f.sn.View(ctx, key, parent); return err }
	noKey := func(_ any, err error) error { return err }
	for _, tc := range []struct {
		desc string
		err  error
		is   func(error) bool
		name string
	}{
		{"prepare an existing key", prepare("active", ""), errdefs.IsAlreadyExists, "active"},
		{"view with an active snapshot's key", view("active", "committed"), errdefs.IsAlreadyExists, "active"},
		{"view twice", view("view", "committed"), errdefs.IsAlreadyExists, "view"},
		{"prepare with a committed name", prepare("committed", ""), errdefs.IsAlreadyExists, "committed"},
		{"prepare over an active snapshot", prepare("x", "active"), errdefs.IsInvalidArgument, "active"},
		{"prepare over a missing parent", prepare("x", "missing"), errdefs.IsNotFound, "missing"},
		{"commit a missing key", f.sn.Commit(ctx, "n", "missing"), errdefs.IsNotFound, "missing"},
		{"commit to a taken name", f.sn.Commit(ctx, "committed", "active"), errdefs.IsAlreadyExists, "committed"},
		{"commit a committed snapshot", f.sn.Commit(ctx, "n", "committed"), errdefs.IsFailedPrecondition, "committed"},
		{"mounts of a committed snapshot", noKey(f.sn.Mounts(ctx, "committed")), errdefs.IsFailedPrecondition, "committed"},
		{"stat a missing key", noKey(f.sn.Stat(ctx, "missing")), errdefs.IsNotFound, "missing"},
		{"usage of a missing key", noKey(f.sn.Usage(ctx, "missing")), errdefs.IsNotFound, "missing"},
		{"mounts of a missing key", noKey(f.sn.Mounts(ctx, "missing")), errdefs.IsNotFound, "missing"},
		{"update a missing key", noKey(f.sn.Update(ctx, snapshots.Info{Name: "missing"})), errdefs.IsNotFound, "missing"},
		{"remove a missing key", f.sn.Remove(ctx, "missing"), errdefs.IsNotFound, "missing"},
	} {
		if tc.err == nil || !tc.is(tc.err) {
			t.Errorf("%s: got %v", tc.desc, tc.err)
		} else if !strings.Contains(tc.err.Error(), strconv.Quote(tc.name)) {
			t.Errorf("%s: %q does not name %q", tc.desc, tc.err, tc.name)
		}
	}
	if info := f.stat("active"); info.Kind != snapshots.KindActive {
		t.Errorf("failed commits changed the active snapshot: %+v", info)
	}
	for _, key := range []string{"x", "n"} {
		if _, err := f.sn.Stat(ctx, key); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("a failed call left %q: %v", key, err)
		}
	}
}
