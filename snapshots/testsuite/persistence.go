package testsuite

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/snapshots"
	"github.com/containerd/errdefs"
)

// testCloseReopen closes the snapshotter with snapshots of every kind and
// opens it again.
func testCloseReopen(t *testing.T, f *fixture) {
	changes := []change{writeFile("/f", "base", 0o644), mkdir("/d", 0o700)}
	ref := f.reference()
	apply(t, ref, changes)
	f.layer("base", "", changes...)
	target := f.mount(f.prepare("active", "base", snapshots.WithLabels(map[string]string{"l": "v"})))
	apply(t, target, []change{writeFile("/written", "w", 0o644)})
	f.unmount(target)
	f.view("view", "base")

	f.reopen()
	for key, kind := range map[string]snapshots.Kind{"base": snapshots.KindCommitted, "active": snapshots.KindActive, "view": snapshots.KindView} {
		if info := f.stat(key); info.Kind != kind {
			t.Errorf("%s after reopening: %+v", key, info)
		}
	}
	if info := f.stat("active"); info.Labels["l"] != "v" || info.Parent != "base" {
		t.Errorf("active after reopening: %+v", info)
	}
	if got := f.walk(); !slices.Equal(got, []string{"active", "base", "view"}) {
		t.Errorf("walk after reopening: %q", got)
	}
	f.checkTree("base", readTree(t, ref))
	mounts, err := f.sn.Mounts(f.ctx, "active")
	if err != nil {
		t.Fatal(err)
	}
	target = f.mount(mounts)
	if _, err := os.Stat(filepath.Join(target, "written")); err != nil {
		t.Errorf("what was written in the active snapshot: %v", err)
	}
	f.unmount(target)

	closeFn := f.close
	f.close = nil
	if err := closeFn(); err != nil {
		t.Fatal(err)
	}
	if err := closeFn(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if _, err := f.sn.Stat(f.ctx, "base"); err == nil {
		t.Error("stat after close succeeded")
	}
}

// testNoLeak checks that root/snapshots holds one entry per snapshot, and
// none once they are all removed, failed calls included.
func testNoLeak(t *testing.T, f *fixture) {
	f.snapshotDirs()
	f.layer("base", "", writeFile("/f", "f", 0o644))
	f.layer("mid", "base", writeFile("/g", "g", 0o644))
	f.prepare("active", "mid")
	f.view("view", "mid")
	f.view("empty-view", "")
	_, _ = f.sn.Prepare(f.ctx, "bad", "missing")
	_, _ = f.sn.Prepare(f.ctx, "active", "")
	_ = f.sn.Commit(f.ctx, "x", "view")
	if got := f.snapshotDirs(); len(got) != 5 {
		t.Errorf("root/snapshots holds %q for 5 snapshots", got)
	}
	for _, key := range []string{"active", "view", "empty-view", "mid", "base"} {
		f.remove(key)
	}
	if got := f.snapshotDirs(); len(got) != 0 {
		t.Errorf("root/snapshots holds %q with no snapshot left", got)
	}
}

// testCrashRecovery leaves in root/snapshots what a crash can leave: the
// temporary directory of a Prepare, the directory of a Prepare whose
// record was never committed, with a mount below it, and a stray file.
// Opening the snapshotter again removes them and keeps the rest.
func testCrashRecovery(t *testing.T, f *fixture) {
	f.snapshotDirs()
	ref := f.reference()
	apply(t, ref, []change{writeFile("/f", "kept", 0o644)})
	f.layer("base", "", writeFile("/f", "kept", 0o644))
	f.prepare("active", "base")
	before := f.snapshotDirs()
	f.stop()

	dir := filepath.Join(f.root, "snapshots")
	for _, p := range []string{"new-crashed/fs/x", "999999/fs/y", "999999/fs/m"} {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "stray"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	mounted := f.t.TempDir()
	if err := os.WriteFile(filepath.Join(mounted, "precious"), []byte("p"), 0o644); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(dir, "999999/fs/m")
	bind := mount.Mount{Type: "bind", Source: mounted, Options: []string{"bind"}}
	if err := bind.Mount(leftover); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mount.UnmountAll(leftover, 0) })

	f.start()
	if got := f.snapshotDirs(); !slices.Equal(got, before) {
		t.Errorf("after recovery root/snapshots holds %q, want %q", got, before)
	}
	if _, err := os.Stat(filepath.Join(mounted, "precious")); err != nil {
		t.Errorf("recovery removed files through a mount: %v", err)
	}
	f.checkTree("base", readTree(t, ref))
	f.stat("active")
	f.prepare("next", "base")
}

// testManyLayers stacks 128 layers, as containerd's suite does: more
// lowerdirs than fit in a page of mount options as absolute paths. Few
// files, as a copying snapshotter copies them all at each layer.
func testManyLayers(t *testing.T, f *fixture) {
	const n = 128
	parent := ""
	for i := range n {
		name := fmt.Sprintf("layer-%03d", i)
		changes := []change{writeFile("/top", name, 0o644)}
		if i == 0 || i == n/2 {
			changes = append(changes, writeFile(fmt.Sprintf("/f%d", i), "", 0o644))
		}
		f.layer(name, parent, changes...)
		parent = name
	}
	for _, m := range [][]mount.Mount{f.prepare("active", parent), f.view("view", parent)} {
		target := f.mount(m)
		for _, p := range []string{"f0", fmt.Sprintf("f%d", n/2)} {
			if _, err := os.Stat(filepath.Join(target, p)); err != nil {
				t.Errorf("%s: %v", p, err)
			}
		}
		if b, err := os.ReadFile(filepath.Join(target, "top")); err != nil || string(b) != parent {
			t.Errorf("/top: %q, %v; want the last layer's", b, err)
		}
		f.unmount(target)
	}
}

// testConcurrent runs whole lifecycles side by side, and races Prepares of
// one key: exactly one wins.
func testConcurrent(t *testing.T, f *fixture) {
	f.layer("base", "", writeFile("/f", "base", 0o644))
	const n = 16
	errs := make(chan error, 2*n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs <- lifecycle(f, i) })
		wg.Go(func() {
			_, err := f.sn.Prepare(f.ctx, "contended", "base")
			if err != nil && !errdefs.IsAlreadyExists(err) {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := f.walk(); len(got) != n+2 {
		t.Errorf("%d snapshots, want %d: %q", len(got), n+2, got)
	}
	if _, err := os.Stat(filepath.Join(f.root, "snapshots")); err == nil {
		if got := f.snapshotDirs(); len(got) != n+2 {
			t.Errorf("root/snapshots holds %d entries for %d snapshots", len(got), n+2)
		}
	}
}

// lifecycle prepares, commits, views and removes snapshots of its own.
func lifecycle(f *fixture, i int) error {
	key, name, view := fmt.Sprintf("active-%d", i), fmt.Sprintf("committed-%d", i), fmt.Sprintf("view-%d", i)
	if _, err := f.sn.Prepare(f.ctx, key, "base"); err != nil {
		return err
	}
	if _, err := f.sn.Usage(f.ctx, key); err != nil {
		return err
	}
	if err := f.sn.Commit(f.ctx, name, key); err != nil {
		return err
	}
	if _, err := f.sn.View(f.ctx, view, name); err != nil {
		return err
	}
	if _, err := f.sn.Stat(f.ctx, view); err != nil {
		return err
	}
	return f.sn.Remove(f.ctx, view)
}
