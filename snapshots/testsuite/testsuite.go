// Package testsuite is the test suite every berth snapshotter passes, so
// that they all keep containerd's semantics. An implementation runs it
// from its own tests:
//
//	func TestSuite(t *testing.T) {
//		testsuite.SnapshotterSuite(t, "overlay", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
//			s, err := overlay.NewSnapshotter(root)
//			if err != nil {
//				return nil, nil, err
//			}
//			return s, s.Close, nil
//		})
//	}
//
// The suite mounts what the snapshotter returns, so it needs root and
// skips otherwise. Each test gets a fresh root directory, mounts only on
// directories of t.TempDir(), unmounts in cleanup and fails when a mount
// is left behind. Contents are checked against a plain directory that
// receives the same changes.
//
// A snapshotter that keeps one entry per snapshot in root/snapshots, as
// both of berth's do, is also checked for leaked directories and for
// recovery from a crash; others skip those two tests.
package testsuite

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/snapshots"
)

// NewSnapshotterFunc opens the snapshotter stored under root and returns
// it with the function that closes it. The suite calls it again on the
// same root to test persistence, after closing the first one.
type NewSnapshotterFunc func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error)

// SnapshotterSuite runs the suite against the snapshotter that
// newSnapshotter opens; name labels the failures.
func SnapshotterSuite(t *testing.T, name string, newSnapshotter NewSnapshotterFunc) {
	if os.Geteuid() != 0 {
		t.Fatalf("%s: the snapshotter suite mounts, which needs root: run the tests as root (make test does)", name)
	}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *fixture)
	}{
		{"Basic", testBasic},
		{"LayerChain", testLayerChain},
		{"SpecialFiles", testSpecialFiles},
		{"RootPermission", testRootPermission},
		{"Views", testViews},
		{"Errors", testErrors},
		{"Remove", testRemove},
		{"RemoveIntermediate", testRemoveIntermediate},
		{"Update", testUpdate},
		{"Walk", testWalk},
		{"Usage", testUsage},
		{"CloseReopen", testCloseReopen},
		{"NoLeak", testNoLeak},
		{"CrashRecovery", testCrashRecovery},
		{"ManyLayers", testManyLayers},
		{"Concurrent", testConcurrent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newFixture(t, name, newSnapshotter))
		})
	}
}

// fixture is one test's snapshotter, over a root of its own.
type fixture struct {
	t    *testing.T
	name string
	// ctx outlives the test's context, which ends before cleanup runs.
	ctx   context.Context
	root  string
	open  NewSnapshotterFunc
	sn    snapshots.Snapshotter
	close func() error
}

func newFixture(t *testing.T, name string, open NewSnapshotterFunc) *fixture {
	f := &fixture{t: t, name: name, ctx: context.Background(), root: t.TempDir(), open: open}
	f.start()
	t.Cleanup(func() {
		f.stop()
		f.assertNoMounts(f.root)
	})
	return f
}

func (f *fixture) start() {
	f.t.Helper()
	sn, closeFn, err := f.open(f.ctx, f.root)
	if err != nil {
		f.t.Fatalf("%s: open %s: %v", f.name, f.root, err)
	}
	f.sn, f.close = sn, closeFn
}

func (f *fixture) stop() {
	f.t.Helper()
	if f.close == nil {
		return
	}
	if err := f.close(); err != nil {
		f.t.Errorf("%s: close: %v", f.name, err)
	}
	f.close = nil
}

// reopen closes the snapshotter and opens its root again.
func (f *fixture) reopen() {
	f.t.Helper()
	f.stop()
	f.start()
}

func (f *fixture) assertNoMounts(dir string) {
	f.t.Helper()
	left, err := mount.MountPointsUnder(dir)
	if err != nil {
		f.t.Fatal(err)
	}
	if len(left) > 0 {
		f.t.Errorf("%s: mounts left under %s: %q", f.name, dir, left)
	}
}

// mount mounts mounts on a new temporary directory, unmounted in cleanup
// (before the directory's removal, as cleanups run last first).
func (f *fixture) mount(mounts []mount.Mount) string {
	f.t.Helper()
	target := f.t.TempDir()
	f.t.Cleanup(func() {
		f.unmount(target)
		f.assertNoMounts(target)
	})
	if err := mount.All(mounts, target); err != nil {
		f.t.Fatalf("%s: mount %+v: %v", f.name, mounts, err)
	}
	return target
}

// unmount unmounts target now; its cleanup finds nothing left to do.
func (f *fixture) unmount(target string) {
	f.t.Helper()
	if err := mount.UnmountAll(target, 0); err != nil {
		f.t.Errorf("%s: unmount %s: %v", f.name, target, err)
	}
}

func (f *fixture) prepare(key, parent string, opts ...snapshots.Opt) []mount.Mount {
	f.t.Helper()
	m, err := f.sn.Prepare(f.ctx, key, parent, opts...)
	if err != nil {
		f.t.Fatalf("%s: prepare %q over %q: %v", f.name, key, parent, err)
	}
	return m
}

func (f *fixture) view(key, parent string, opts ...snapshots.Opt) []mount.Mount {
	f.t.Helper()
	m, err := f.sn.View(f.ctx, key, parent, opts...)
	if err != nil {
		f.t.Fatalf("%s: view %q over %q: %v", f.name, key, parent, err)
	}
	return m
}

func (f *fixture) commit(name, key string, opts ...snapshots.Opt) {
	f.t.Helper()
	if err := f.sn.Commit(f.ctx, name, key, opts...); err != nil {
		f.t.Fatalf("%s: commit %q as %q: %v", f.name, key, name, err)
	}
}

func (f *fixture) remove(key string) {
	f.t.Helper()
	if err := f.sn.Remove(f.ctx, key); err != nil {
		f.t.Fatalf("%s: remove %q: %v", f.name, key, err)
	}
}

func (f *fixture) stat(key string) snapshots.Info {
	f.t.Helper()
	info, err := f.sn.Stat(f.ctx, key)
	if err != nil {
		f.t.Fatalf("%s: stat %q: %v", f.name, key, err)
	}
	return info
}

// layer prepares key over parent, applies changes through its mounts and
// commits it as name.
func (f *fixture) layer(name, parent string, changes ...change) {
	f.t.Helper()
	key := "prepare-" + name
	target := f.mount(f.prepare(key, parent))
	apply(f.t, target, changes)
	f.unmount(target)
	f.commit(name, key)
}

// checkTree mounts a view of committed snapshot name and compares its
// tree with want.
func (f *fixture) checkTree(name string, want tree) {
	f.t.Helper()
	key := "check-" + name
	target := f.mount(f.view(key, name))
	got := readTree(f.t, target)
	f.unmount(target)
	f.remove(key)
	if diff := want.diff(got); diff != "" {
		f.t.Errorf("%s: snapshot %q differs from the expected tree (-want +got):\n%s", f.name, name, diff)
	}
}

// snapshotDirs lists root/snapshots, or fails the test when the
// snapshotter does not keep its snapshots there.
func (f *fixture) snapshotDirs() []string {
	f.t.Helper()
	entries, err := os.ReadDir(filepath.Join(f.root, "snapshots"))
	if os.IsNotExist(err) {
		f.t.Fatalf("%s keeps no root/snapshots directory: the leak and crash checks need it", f.name)
	}
	if err != nil {
		f.t.Fatal(err)
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names
}
