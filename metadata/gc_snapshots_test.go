package metadata_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/images"
	"github.com/berth-dev/berth/leases"
	"github.com/berth-dev/berth/metadata"
	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/snapshots"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// pushUnpackedImage records image name as an unpack leaves it: its config
// blob labelled containerd.io/gc.ref.snapshot.SNAPSHOTTER with the chain
// ID of its top layer, held by the manifest the image points to.
func pushUnpackedImage(t *testing.T, ctx context.Context, e *snapEnv, name, snapshotter, top string) {
	t.Helper()
	cs := e.db.ContentStore()
	config := commit(t, ctx, cs, name+"-config", []byte(name+" config"),
		map[string]string{"containerd.io/gc.ref.snapshot." + snapshotter: top})
	manifest := []byte(name + " manifest")
	commit(t, ctx, cs, name+"-manifest", manifest, map[string]string{gcRef + ".config": config.String()})
	img := images.Image{Name: name, Target: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(manifest), Size: int64(len(manifest))}}
	if _, err := e.db.Images().Create(ctx, img); err != nil {
		t.Fatal(err)
	}
}

// chain commits layers chain-1 <- chain-2 <- chain-3 in s, each with a
// file of its own, and returns the top's name.
func chain(t *testing.T, ctx context.Context, s snapshots.Snapshotter) string {
	t.Helper()
	parent := ""
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("chain-%d", i)
		layer(t, ctx, s, name, parent, map[string]string{name: name})
		parent = name
	}
	return parent
}

// backendIn lists the backend keys of namespace ns ("<ns>/<seq>/<key>").
func (e *snapEnv) backendIn(t *testing.T, name, ns string) []string {
	t.Helper()
	var out []string
	for _, k := range e.backendKeys(t, name) {
		if strings.HasPrefix(k, ns+"/") {
			out = append(out, k)
		}
	}
	return out
}

// TestGCSnapshotsImageChain: an image's gc.ref.snapshot label keeps its
// top snapshot and, through parents, the whole chain; deleting the image
// removes the chain from the namespace and the backend, and not the same
// chain of another namespace.
func TestGCSnapshotsImageChain(t *testing.T) {
	e := newSnapEnv(t)
	s := e.db.Snapshotter("overlayfs")
	a, b := nsCtx("a"), nsCtx("b")
	for _, ctx := range []context.Context{a, b} {
		top := chain(t, ctx, s)
		pushUnpackedImage(t, ctx, e, "app:1", "overlayfs", top)
	}
	// Committed snapshots nothing refers to, one the other's parent.
	layer(t, a, s, "stray", "", map[string]string{"s": "s"})
	layer(t, a, s, "stray-child", "stray", nil)

	st := e.gc(t)
	if st.Snapshots != 2 {
		t.Errorf("stats = %+v, want the 2 stray snapshots removed", st)
	}
	want := []string{"chain-1", "chain-2", "chain-3"}
	for _, ctx := range []context.Context{a, b} {
		if got := keys(t, ctx, s); !slices.Equal(got, want) {
			t.Errorf("snapshots after a collection = %q, want the image's chain %q", got, want)
		}
	}
	if got := e.dirs(t, "overlayfs"); len(got) != 6 {
		t.Errorf("overlay directories = %q, want the 6 of the two chains", got)
	}

	if err := e.db.Images().Delete(a, "app:1", images.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, a, s); len(got) != 0 {
		t.Errorf("snapshots in a after its image went = %q, want none", got)
	}
	if got := e.backendIn(t, "overlayfs", "a"); len(got) != 0 {
		t.Errorf("backend snapshots of a after its image went = %q, want none", got)
	}
	if got := keys(t, b, s); !slices.Equal(got, want) {
		t.Errorf("snapshots in b after a's image went = %q, want %q", got, want)
	}
	if got := e.dirs(t, "overlayfs"); len(got) != 3 {
		t.Errorf("overlay directories after a's image went = %q, want b's 3", got)
	}
	// b's chain is whole: a view of its top shows every layer's file.
	m := mustView(t, b, s, "check", "chain-3")
	checkMountedFiles(t, m, "chain-1", "chain-2", "chain-3")
	if err := s.Remove(b, "check"); err != nil {
		t.Fatal(err)
	}

	if err := e.db.Images().Delete(b, "app:1", images.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	if got := e.dirs(t, "overlayfs"); len(got) != 0 {
		t.Errorf("overlay directories after both images went = %q, want none", got)
	}
	for _, ns := range []string{"a", "b"} {
		if err := e.db.Namespaces().Delete(context.Background(), ns); err != nil {
			t.Errorf("namespace %s after its image went: %v", ns, err)
		}
	}
}

// checkMountedFiles mounts m read-only and checks that each file holds
// its own name.
func checkMountedFiles(t *testing.T, m []mount.Mount, files ...string) {
	t.Helper()
	target := t.TempDir()
	if err := mount.All(m, target); err != nil {
		t.Fatalf("mount %+v: %v", m, err)
	}
	defer func() {
		if err := mount.UnmountAll(target, 0); err != nil {
			t.Errorf("unmount %s: %v", target, err)
		}
	}()
	for _, f := range files {
		if b, err := os.ReadFile(filepath.Join(target, f)); err != nil || string(b) != f {
			t.Errorf("%s in the view = %q, %v; want %q", f, b, err, f)
		}
	}
}

// TestGCSnapshotsRoots: active snapshots and views made outside a lease
// stay with their parents; so does a committed snapshot labelled gc.root;
// other committed snapshots go.
func TestGCSnapshotsRoots(t *testing.T) {
	e := newSnapEnv(t)
	s := e.db.Snapshotter("overlayfs")
	ctx := nsCtx("roots")
	layer(t, ctx, s, "base", "", nil)
	mustPrepare(t, ctx, s, "work", "base")
	layer(t, ctx, s, "viewed", "", nil)
	mustView(t, ctx, s, "look", "viewed")
	mustView(t, ctx, s, "empty-look", "")
	mustPrepare(t, ctx, s, "empty-work", "")
	layer(t, ctx, s, "pinned-parent", "", nil)
	layer(t, ctx, s, "pinned", "pinned-parent", nil, snapshots.WithLabels(map[string]string{gcRoot: "2024-01-01T00:00:00Z"}))
	layer(t, ctx, s, "loose", "", nil)
	layer(t, ctx, s, "loose-child", "loose", nil)

	e.gc(t)
	want := []string{"base", "empty-look", "empty-work", "look", "pinned", "pinned-parent", "viewed", "work"}
	if got := keys(t, ctx, s); !slices.Equal(got, want) {
		t.Errorf("snapshots after a collection = %q, want %q", got, want)
	}
	if got := e.dirs(t, "overlayfs"); len(got) != len(want) {
		t.Errorf("overlay directories = %q, want %d", got, len(want))
	}

	// Once its users are removed, a committed parent goes; so does a
	// snapshot whose gc.root label is removed.
	for _, k := range []string{"work", "look"} {
		if err := s.Remove(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Update(ctx, snapshots.Info{Name: "pinned"}, "labels."+gcRoot); err != nil {
		t.Fatal(err)
	}
	e.gc(t)
	want = []string{"empty-look", "empty-work"}
	if got := keys(t, ctx, s); !slices.Equal(got, want) {
		t.Errorf("snapshots after their users went = %q, want %q", got, want)
	}
	if got := e.dirs(t, "overlayfs"); len(got) != len(want) {
		t.Errorf("overlay directories = %q, want %d", got, len(want))
	}
}

// TestGCSnapshotsLeased: an interrupted unpack leaves an active snapshot,
// a view and their committed parent under a lease; they stay while the
// lease does and go with it. What was made outside a lease stays.
func TestGCSnapshotsLeased(t *testing.T) {
	e := newSnapEnv(t)
	s := e.db.Snapshotter("native")
	ctx := nsCtx("unpack")
	lm := e.db.Leases()
	for _, id := range []string{"first", "second"} {
		if _, err := lm.Create(ctx, leases.Lease{ID: id}); err != nil {
			t.Fatal(err)
		}
		lctx := leases.WithLease(ctx, id)
		layer(t, lctx, s, id+"-layer", "", map[string]string{"f": id})
		mustPrepare(t, lctx, s, "extract-"+id, id+"-layer")
		mustView(t, lctx, s, "view-"+id, id+"-layer")
	}
	mustPrepare(t, ctx, s, "unleased", "")
	e.gc(t)
	if got := keys(t, ctx, s); len(got) != 7 {
		t.Fatalf("snapshots after a collection = %q, want the leases to keep all 7", got)
	}

	if err := lm.Delete(ctx, "first", false); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, ctx, s); len(got) != 7 {
		t.Errorf("snapshots before the next collection = %q, want all 7", got)
	}
	e.gc(t)
	want := []string{"extract-second", "second-layer", "unleased", "view-second"}
	if got := keys(t, ctx, s); !slices.Equal(got, want) {
		t.Errorf("snapshots after lease first went = %q, want %q", got, want)
	}
	if err := lm.Delete(ctx, "second", true); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, ctx, s); !slices.Equal(got, []string{"unleased"}) {
		t.Errorf("snapshots after both leases went = %q, want [unleased]", got)
	}
	if got := e.dirs(t, "native"); len(got) != 1 {
		t.Errorf("native directories = %q, want unleased's", got)
	}
}

// TestGCSnapshotsExpiredLease: a lease past its gc.expire time is removed
// by the collection, which then removes what it held.
func TestGCSnapshotsExpiredLease(t *testing.T) {
	e := newSnapEnv(t)
	s := e.db.Snapshotter("overlayfs")
	ctx := nsCtx("expiry")
	lm := e.db.Leases()
	exp := time.Now().Add(300 * time.Millisecond).UTC().Format(time.RFC3339Nano)
	if _, err := lm.Create(ctx, leases.Lease{ID: "short", Labels: map[string]string{gcExpire: exp}}); err != nil {
		t.Fatal(err)
	}
	lctx := leases.WithLease(ctx, "short")
	layer(t, lctx, s, "sha256:layer", "", map[string]string{"f": "f"})
	mustPrepare(t, lctx, s, "extract-1 sha256:next", "sha256:layer")
	e.gc(t)
	if got := keys(t, ctx, s); len(got) != 2 {
		t.Fatalf("snapshots under a live lease = %q, want 2", got)
	}
	time.Sleep(400 * time.Millisecond)
	st := e.gc(t)
	if st.Leases != 1 || st.Snapshots != 2 {
		t.Errorf("stats = %+v, want the lease and its 2 snapshots removed", st)
	}
	if got := keys(t, ctx, s); len(got) != 0 {
		t.Errorf("snapshots after the lease expired = %q, want none", got)
	}
	if got := e.dirs(t, "overlayfs"); len(got) != 0 {
		t.Errorf("overlay directories after the lease expired = %q, want none", got)
	}
}

// TestGCSnapshotsBackendOrphans: snapshots in a backend that no namespace
// records (what a crash between the backend and the database leaves) are
// removed children first; recorded ones, whatever their backend keys, stay.
func TestGCSnapshotsBackendOrphans(t *testing.T) {
	e := newSnapEnv(t)
	for _, name := range []string{"overlayfs", "native"} {
		t.Run(name, func(t *testing.T) {
			s := e.db.Snapshotter(name)
			be := e.backends[name]
			bg := context.Background()
			// The same chain, under the same keys, in a namespace.
			keep := nsCtx("keep-" + name)
			layer(t, keep, s, "orphan-1", "", map[string]string{"orphan-1": "orphan-1"})
			layer(t, keep, s, "orphan-2", "orphan-1", map[string]string{"orphan-2": "orphan-2"}, snapshots.WithLabels(map[string]string{gcRoot: "x"}))
			kept := e.backendKeys(t, name)

			// Orphans: a committed chain with an active child and a view,
			// one of them under a namespaced-looking key.
			layer(t, bg, be, "orphan-1", "", map[string]string{"x": "x"})
			layer(t, bg, be, "keep-"+name+"/99/orphan-2", "orphan-1", nil)
			mustPrepare(t, bg, be, "orphan-active", "keep-"+name+"/99/orphan-2")
			mustView(t, bg, be, "orphan-view", "orphan-1")

			st := e.gc(t)
			if st.Snapshots != 4 {
				t.Errorf("stats = %+v, want the 4 orphans removed", st)
			}
			if got := e.backendKeys(t, name); !slices.Equal(got, kept) {
				t.Errorf("backend snapshots after a collection = %q, want the recorded %q", got, kept)
			}
			if got := e.dirs(t, name); len(got) != len(kept) {
				t.Errorf("%s directories after a collection = %q, want the %d recorded", name, got, len(kept))
			}
			if got := keys(t, keep, s); !slices.Equal(got, []string{"orphan-1", "orphan-2"}) {
				t.Errorf("recorded snapshots = %q, want both", got)
			}
			m := mustView(t, keep, s, "check", "orphan-2")
			checkMountedFiles(t, m, "orphan-1", "orphan-2")
			if err := s.Remove(keep, "check"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestGCSnapshotsConcurrent races unpacks under leases, lease deletions and
// collections: whatever the interleaving, every recorded snapshot has
// its backend snapshot and the backend holds nothing else.
func TestGCSnapshotsConcurrent(t *testing.T) {
	e := newSnapEnv(t)
	s := e.db.Snapshotter("overlayfs")
	ctx := nsCtx("race")
	stop := make(chan struct{})
	var collector sync.WaitGroup
	collector.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := e.db.GarbageCollect(context.Background()); err != nil {
				t.Error(err)
				return
			}
		}
	})
	var workers sync.WaitGroup
	for w := range 4 {
		workers.Go(func() {
			if err := unpackImages(ctx, e.db, s, w); err != nil {
				t.Error(err)
			}
		})
	}
	workers.Wait()
	close(stop)
	collector.Wait()
	e.gc(t)

	got := keys(t, ctx, s)
	var want []string
	for w := range 4 {
		for i := 0; i < 5; i += 2 {
			want = append(want, fmt.Sprintf("w%d-%d-base", w, i), fmt.Sprintf("w%d-%d-top", w, i))
		}
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("snapshots after the race = %q, want %q", got, want)
	}
	if be := e.backendKeys(t, "overlayfs"); len(be) != len(want) {
		t.Errorf("backend snapshots = %d, want %d: %q", len(be), len(want), be)
	}
	if dirs := e.dirs(t, "overlayfs"); len(dirs) != len(want) {
		t.Errorf("overlay directories = %d, want %d", len(dirs), len(want))
	}
}

// unpackImages unpacks 5 two-layer images of worker w, each under a
// lease of its own that it then deletes; every other image's top is
// pinned by a gc.root label first.
func unpackImages(ctx context.Context, db *metadata.DB, s snapshots.Snapshotter, w int) error {
	lm := db.Leases()
	for i := range 5 {
		id := fmt.Sprintf("w%d-%d", w, i)
		if _, err := lm.Create(ctx, leases.Lease{ID: id}); err != nil {
			return err
		}
		if err := unpackTwo(leases.WithLease(ctx, id), s, id); err != nil {
			return err
		}
		if i%2 == 0 {
			if _, err := s.Update(ctx, snapshots.Info{Name: id + "-top", Labels: map[string]string{gcRoot: "x"}}, "labels."+gcRoot); err != nil {
				return err
			}
		}
		if err := lm.Delete(ctx, id, false); err != nil {
			return err
		}
	}
	return nil
}

// unpackTwo commits ID-base and ID-top over it, as an unpack would.
func unpackTwo(ctx context.Context, s snapshots.Snapshotter, id string) error {
	parent := ""
	for _, name := range []string{id + "-base", id + "-top"} {
		key := "extract-" + name
		if _, err := s.Prepare(ctx, key, parent); err != nil {
			return err
		}
		if err := s.Commit(ctx, name, key); err != nil {
			return err
		}
		parent = name
	}
	return nil
}
