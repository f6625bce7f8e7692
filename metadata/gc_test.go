package metadata_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/berth-dev/berth/content"
	"github.com/berth-dev/berth/images"
	"github.com/berth-dev/berth/leases"
	"github.com/berth-dev/berth/metadata"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	gcRoot   = "containerd.io/gc.root"
	gcExpire = "containerd.io/gc.expire"
	gcRef    = "containerd.io/gc.ref.content"
)

// testImage is what pushImage wrote: a manifest whose gc.ref.content
// labels keep a config and layers.
type testImage struct {
	name     string
	manifest digest.Digest
	config   digest.Digest
	layers   []digest.Digest
}

func (ti testImage) blobs() []digest.Digest {
	return sorted(append([]digest.Digest{ti.manifest, ti.config}, ti.layers...)...)
}

// pushImage writes an image the way a pull does: layers and config first,
// then the manifest labelled with references to them, then the image
// record. seed makes the bytes unique to one image.
func pushImage(t *testing.T, ctx context.Context, db *metadata.DB, name, seed string, nlayers int) testImage {
	t.Helper()
	cs := db.ContentStore()
	ti := testImage{name: name}
	lbls := map[string]string{}
	for i := range nlayers {
		d := commit(t, ctx, cs, fmt.Sprintf("%s-layer-%d", seed, i), []byte(fmt.Sprintf("%s layer %d", seed, i)), nil)
		ti.layers = append(ti.layers, d)
		lbls[fmt.Sprintf("%s.l.%d", gcRef, i)] = d.String()
	}
	ti.config = commit(t, ctx, cs, seed+"-config", []byte(seed+" config"), nil)
	lbls[gcRef+".config"] = ti.config.String()
	manifest := []byte(seed + " manifest")
	ti.manifest = commit(t, ctx, cs, seed+"-manifest", manifest, lbls)
	img := images.Image{Name: name, Target: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: ti.manifest, Size: int64(len(manifest))}}
	if _, err := db.Images().Create(ctx, img); err != nil {
		t.Fatal(err)
	}
	return ti
}

// visible reports which of ds the namespace of ctx can read.
func visible(ctx context.Context, cs content.Store, ds ...digest.Digest) []digest.Digest {
	var out []digest.Digest
	for _, d := range ds {
		if _, err := readAll(ctx, cs, d); err == nil {
			out = append(out, d)
		}
	}
	return sorted(out...)
}

func TestGCKeepsImage(t *testing.T) {
	e := newEnv(t)
	ctx := nsCtx("default")
	img := pushImage(t, ctx, e.db, "docker.io/library/app:1", "app", 2)
	st := e.gc(t)
	if st.ContentRefs != 0 || st.Blobs != 0 {
		t.Errorf("stats = %+v, want nothing removed", st)
	}
	if got := e.blobsOnDisk(t); !reflect.DeepEqual(got, img.blobs()) {
		t.Errorf("blobs on disk = %v, want %v", got, img.blobs())
	}
	if got := visible(ctx, e.db.ContentStore(), img.blobs()...); !reflect.DeepEqual(got, img.blobs()) {
		t.Errorf("visible = %v, want %v", got, img.blobs())
	}
}

// A collection that removes nothing leaves the database file alone: no
// commit, no sync, as after most deletes (a container's, a lease's).
func TestGCNothingSweptWritesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := nsCtx("default")
	pushImage(t, ctx, e.db, "app:1", "app", 2)
	e.gc(t)
	before := e.db.WritesForTest()
	if st := e.gc(t); st != (metadata.GCStats{Duration: st.Duration}) {
		t.Errorf("stats = %+v, want nothing removed", st)
	}
	if got := e.db.WritesForTest(); got != before {
		t.Errorf("a collection that removed nothing wrote %d pages", got-before)
	}
	// One that removes something still commits.
	if err := e.db.Images().Delete(ctx, "app:1"); err != nil {
		t.Fatal(err)
	}
	if st := e.gc(t); st.ContentRefs == 0 || e.db.WritesForTest() == before {
		t.Errorf("stats = %+v, %d pages written; want references removed and a commit", st, e.db.WritesForTest()-before)
	}
	if got := e.blobsOnDisk(t); len(got) != 0 {
		t.Errorf("blobs on disk after collection: %v", got)
	}
}

func TestGCImageSynchronousDelete(t *testing.T) {
	e := newEnv(t)
	ctx := nsCtx("default")
	img := pushImage(t, ctx, e.db, "app:1", "app", 3)
	if err := e.db.Images().Delete(ctx, img.name, images.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	if got := e.blobsOnDisk(t); len(got) != 0 {
		t.Errorf("blobs on disk after a synchronous delete: %v", got)
	}
	cs := e.db.ContentStore()
	for _, d := range img.blobs() {
		_, err := cs.Info(ctx, d)
		wantErr(t, err, isNotFound)
	}
	if got := walk(t, cs, ctx); len(got) != 0 {
		t.Errorf("Walk after the collection = %v", got)
	}
	// The namespace holds nothing any more.
	if err := e.db.Namespaces().Delete(ctx, "default"); err != nil {
		t.Errorf("namespace not empty after the image went: %v", err)
	}
}

func TestGCAsynchronousDeleteNotifies(t *testing.T) {
	e := newEnv(t)
	ctx := nsCtx("default")
	calls := 0
	e.db.SetMutationCallback(func() { calls++ })
	img := pushImage(t, ctx, e.db, "app:1", "app", 1)
	if err := e.db.Images().Delete(ctx, img.name); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("mutation callback called %d times, want 1", calls)
	}
	// Nothing collected yet: that is the scheduler's job.
	if got := e.blobsOnDisk(t); !reflect.DeepEqual(got, img.blobs()) {
		t.Errorf("blobs on disk before collection = %v, want %v", got, img.blobs())
	}
	st := e.gc(t)
	if st.ContentRefs != 3 || st.Blobs != 3 || st.BytesReclaimed == 0 {
		t.Errorf("stats = %+v, want 3 references and 3 blobs removed", st)
	}
	if got := e.blobsOnDisk(t); len(got) != 0 {
		t.Errorf("blobs on disk after collection: %v", got)
	}
}

// The same image in two namespaces: deleting it from one keeps every blob
// for the other.
func TestGCSharedAcrossNamespaces(t *testing.T) {
	e := newEnv(t)
	a, b := nsCtx("default"), nsCtx("k8s.io")
	img := pushImage(t, a, e.db, "app:1", "app", 2)
	pushImage(t, b, e.db, "app:1", "app", 2)
	if got := e.blobsOnDisk(t); !reflect.DeepEqual(got, img.blobs()) {
		t.Fatalf("blobs on disk = %v, want one copy of %v", got, img.blobs())
	}
	if err := e.db.Images().Delete(a, "app:1", images.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	if got := e.blobsOnDisk(t); !reflect.DeepEqual(got, img.blobs()) {
		t.Errorf("blobs on disk = %v, want %v kept for k8s.io", got, img.blobs())
	}
	cs := e.db.ContentStore()
	if got := visible(b, cs, img.blobs()...); !reflect.DeepEqual(got, img.blobs()) {
		t.Errorf("visible in k8s.io = %v, want %v", got, img.blobs())
	}
	if got := visible(a, cs, img.blobs()...); len(got) != 0 {
		t.Errorf("still visible in default: %v", got)
	}
	if err := e.db.Images().Delete(b, "app:1", images.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	if got := e.blobsOnDisk(t); len(got) != 0 {
		t.Errorf("blobs on disk after both deletes: %v", got)
	}
}

// An image record in one namespace does not keep a blob referenced only
// by another namespace: references do not cross namespaces.
func TestGCReferencesStayInNamespace(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	a, b := nsCtx("a"), nsCtx("b")
	data := []byte("manifest in a")
	dgst := commit(t, a, cs, "m", data, nil)
	img := images.Image{Name: "x", Target: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: dgst, Size: int64(len(data))}}
	if _, err := e.db.Images().Create(b, img); err != nil {
		t.Fatal(err)
	}
	e.gc(t)
	if e.onDisk(t, dgst) {
		t.Errorf("blob kept by an image of another namespace")
	}
}

func TestGCUnreferencedBlob(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	ctx := nsCtx("default")
	kept := commit(t, ctx, cs, "root", []byte("a root"), map[string]string{gcRoot: "2024-01-01T00:00:00Z"})
	child := commit(t, ctx, cs, "child", []byte("kept by the root"), nil)
	if _, err := cs.Update(ctx, content.Info{Digest: kept, Labels: map[string]string{gcRef + ".x": child.String()}}, "labels."+gcRef+".x"); err != nil {
		t.Fatal(err)
	}
	garbage := commit(t, ctx, cs, "garbage", []byte("nobody wants me"), map[string]string{"some": "label"})
	st := e.gc(t)
	if want := (metadata.GCStats{ContentRefs: 1, Blobs: 1, BytesReclaimed: int64(len("nobody wants me"))}); st.ContentRefs != want.ContentRefs || st.Blobs != want.Blobs || st.BytesReclaimed != want.BytesReclaimed {
		t.Errorf("stats = %+v, want %+v", st, want)
	}
	if got, want := e.blobsOnDisk(t), sorted(kept, child); !reflect.DeepEqual(got, want) {
		t.Errorf("blobs on disk = %v, want %v", got, want)
	}
	_, err := cs.Info(ctx, garbage)
	wantErr(t, err, isNotFound)

	// Dropping the gc.root label releases both.
	if _, err := cs.Update(ctx, content.Info{Digest: kept}, "labels."+gcRoot); err != nil {
		t.Fatal(err)
	}
	e.gc(t)
	if got := e.blobsOnDisk(t); len(got) != 0 {
		t.Errorf("blobs on disk after the root label went: %v", got)
	}
}

// Image labels can reference content too.
func TestGCImageLabelReferences(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	ctx := nsCtx("default")
	m := commit(t, ctx, cs, "m", []byte("manifest"), nil)
	sig := commit(t, ctx, cs, "sig", []byte("signature"), nil)
	img := images.Image{
		Name:   "signed",
		Labels: map[string]string{gcRef + ".sig": sig.String(), gcRef + ".bogus": "not-a-digest"},
		Target: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: m, Size: 8},
	}
	if _, err := e.db.Images().Create(ctx, img); err != nil {
		t.Fatal(err)
	}
	e.gc(t)
	if got, want := e.blobsOnDisk(t), sorted(m, sig); !reflect.DeepEqual(got, want) {
		t.Errorf("blobs on disk = %v, want %v", got, want)
	}
}

func TestGCLeaseKeepsBlob(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	lm := e.db.Leases()
	ctx := nsCtx("default")
	if _, err := lm.Create(ctx, leases.Lease{ID: "pull"}); err != nil {
		t.Fatal(err)
	}
	lctx := leases.WithLease(ctx, "pull")
	layer := commit(t, lctx, cs, "layer", []byte("leased layer"), nil)
	// The lease also holds what the leased blob references.
	config := commit(t, ctx, cs, "config", []byte("config"), nil)
	m := commit(t, lctx, cs, "m", []byte("manifest"), map[string]string{gcRef + ".config": config.String()})
	// A blob added to the lease explicitly.
	extra := commit(t, ctx, cs, "extra", []byte("extra"), nil)
	if err := lm.AddResource(ctx, "pull", leases.Resource{Type: "content", ID: extra.String()}); err != nil {
		t.Fatal(err)
	}
	e.gc(t)
	all := sorted(layer, config, m, extra)
	if got := e.blobsOnDisk(t); !reflect.DeepEqual(got, all) {
		t.Errorf("blobs on disk under the lease = %v, want %v", got, all)
	}
	// Released one resource: that one goes at the next collection.
	if err := lm.DeleteResource(ctx, "pull", leases.Resource{Type: "content", ID: extra.String()}); err != nil {
		t.Fatal(err)
	}
	e.gc(t)
	if e.onDisk(t, extra) {
		t.Errorf("blob released from the lease was kept")
	}
	if err := lm.Delete(ctx, "pull", true); err != nil {
		t.Fatal(err)
	}
	if got := e.blobsOnDisk(t); len(got) != 0 {
		t.Errorf("blobs on disk after the lease's synchronous delete: %v", got)
	}
}

func TestGCExpiredLease(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	lm := e.db.Leases()
	ctx := nsCtx("default")
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)
	for id, exp := range map[string]string{"expired": past, "current": future} {
		if _, err := lm.Create(ctx, leases.Lease{ID: id, Labels: map[string]string{gcExpire: exp}}); err != nil {
			t.Fatal(err)
		}
	}
	gone := commit(t, leases.WithLease(ctx, "expired"), cs, "a", []byte("expired lease's"), nil)
	kept := commit(t, leases.WithLease(ctx, "current"), cs, "b", []byte("current lease's"), nil)
	w, err := cs.Writer(leases.WithLease(ctx, "expired"), content.WithRef("expired-ingest"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("partial"))
	w.Close()

	st := e.gc(t)
	if st.Leases != 1 || st.ContentRefs != 1 || st.Blobs != 1 || st.Ingests != 1 {
		t.Errorf("stats = %+v, want 1 lease, 1 reference, 1 blob and 1 ingest removed", st)
	}
	ls, _ := lm.List(ctx)
	if ids := leaseIDs(ls); !reflect.DeepEqual(ids, []string{"current"}) {
		t.Errorf("leases after collection = %v, want [current]", ids)
	}
	if got := e.blobsOnDisk(t); !reflect.DeepEqual(got, []digest.Digest{kept}) {
		t.Errorf("blobs on disk = %v, want only %s (not %s)", got, kept, gone)
	}
	if n := e.ingestsOnDisk(t); n != 0 {
		t.Errorf("%d ingests on disk, want the expired lease's one gone", n)
	}
}

// restoreIngestExpiry sets metadata.IngestExpiry for the test.
func setIngestExpiry(t *testing.T, d time.Duration) {
	old := metadata.IngestExpiry
	metadata.IngestExpiry = d
	t.Cleanup(func() { metadata.IngestExpiry = old })
}

func TestGCUnleasedIngestExpiry(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	ctx := nsCtx("default")
	w, err := cs.Writer(ctx, content.WithRef("interrupted"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("first half"))
	w.Close()

	// Recent: kept, so that the upload can resume.
	if st := e.gc(t); st.Ingests != 0 {
		t.Errorf("stats = %+v, want no ingest removed", st)
	}
	if st, err := cs.Status(ctx, "interrupted"); err != nil || st.Offset != 10 {
		t.Errorf("Status after collection = %+v, %v", st, err)
	}

	// Stale: collected, record and bytes.
	setIngestExpiry(t, 20*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	if st := e.gc(t); st.Ingests != 1 || st.BytesReclaimed != 10 {
		t.Errorf("stats = %+v, want 1 ingest and 10 bytes removed", st)
	}
	_, err = cs.Status(ctx, "interrupted")
	wantErr(t, err, isNotFound)
	if n := e.ingestsOnDisk(t); n != 0 {
		t.Errorf("%d ingests on disk after expiry", n)
	}
}

func TestGCLeasedIngest(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	lm := e.db.Leases()
	ctx := nsCtx("default")
	if _, err := lm.Create(ctx, leases.Lease{ID: "l"}); err != nil {
		t.Fatal(err)
	}
	w, err := cs.Writer(leases.WithLease(ctx, "l"), content.WithRef("leased"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("partial"))
	w.Close()

	// A leased ingest ignores IngestExpiry: it lives as long as its lease.
	setIngestExpiry(t, time.Nanosecond)
	time.Sleep(time.Millisecond)
	e.gc(t)
	if _, err := cs.Status(ctx, "leased"); err != nil {
		t.Errorf("leased ingest collected while its lease lives: %v", err)
	}
	metadata.IngestExpiry = time.Hour
	if err := lm.Delete(ctx, "l", true); err != nil {
		t.Fatal(err)
	}
	_, err = cs.Status(ctx, "leased")
	wantErr(t, err, isNotFound)
	if n := e.ingestsOnDisk(t); n != 0 {
		t.Errorf("%d ingests on disk after the lease went", n)
	}
}

// An ingest whose writer is open is never pulled from under it: the
// backend refuses to abort a locked ref, and the writer can still commit.
func TestGCOpenWriterSurvives(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	lm := e.db.Leases()
	ctx := nsCtx("default")
	if _, err := lm.Create(ctx, leases.Lease{ID: "l"}); err != nil {
		t.Fatal(err)
	}
	lctx := leases.WithLease(ctx, "l")
	data := []byte("a long download")
	w, err := cs.Writer(lctx, content.WithRef("dl"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write(data[:5])

	// The lease goes: the record is garbage, but the backend ingest is
	// locked by the open writer.
	if err := lm.Delete(ctx, "l", true); err != nil {
		t.Fatal(err)
	}
	wantErr(t, e.backend.Abort(ctx, "default/dl"), isUnavailable)
	if n := e.ingestsOnDisk(t); n != 1 {
		t.Fatalf("%d ingests on disk, want the open one kept", n)
	}
	e.gc(t)
	w.Write(data[5:])
	if err := w.Commit(ctx, int64(len(data)), digest.FromBytes(data), content.WithLabels(map[string]string{gcRoot: "x"})); err != nil {
		t.Fatalf("commit after the collections: %v", err)
	}
	if got, err := readAll(ctx, cs, digest.FromBytes(data)); err != nil || string(got) != string(data) {
		t.Errorf("read = %q, %v; want %q", got, err, data)
	}
	e.gc(t)
	if !e.onDisk(t, digest.FromBytes(data)) {
		t.Errorf("committed gc.root blob collected")
	}
}

// An un-leased ingest with an open, idle writer: past IngestExpiry its
// record goes, but the bytes stay until the writer closes.
func TestGCStaleOpenWriter(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	ctx := nsCtx("default")
	w, err := cs.Writer(ctx, content.WithRef("idle"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("idle"))
	setIngestExpiry(t, time.Nanosecond)
	time.Sleep(time.Millisecond)
	e.gc(t)
	if n := e.ingestsOnDisk(t); n != 1 {
		t.Errorf("%d ingests on disk, want the open one kept", n)
	}
	w.Close()
	e.gc(t)
	if n := e.ingestsOnDisk(t); n != 0 {
		t.Errorf("%d ingests on disk after Close and a collection, want 0", n)
	}
}

// A record whose backend ingest vanished (a process died between the
// backend commit and the record's removal) is collected, and no longer
// keeps the namespace from being deleted.
func TestGCOrphanIngestRecord(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	ctx := nsCtx("default")
	w, err := cs.Writer(ctx, content.WithRef("orphan"))
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := e.backend.Abort(ctx, "default/orphan"); err != nil {
		t.Fatal(err)
	}
	if st := e.gc(t); st.Ingests != 1 {
		t.Errorf("stats = %+v, want the orphan record removed", st)
	}
	if err := e.db.Namespaces().Delete(ctx, "default"); err != nil {
		t.Errorf("namespace delete after the orphan's collection: %v", err)
	}
}

// A backend ingest no namespace records (left by a crash before the
// record was written) is removed.
func TestGCUnrecordedBackendIngest(t *testing.T) {
	e := newEnv(t)
	ctx := nsCtx("default")
	w, err := e.backend.Writer(ctx, content.WithRef("default/unrecorded"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("xyz"))
	w.Close()
	if st := e.gc(t); st.BytesReclaimed != 3 {
		t.Errorf("stats = %+v, want 3 bytes reclaimed", st)
	}
	if n := e.ingestsOnDisk(t); n != 0 {
		t.Errorf("%d ingests on disk", n)
	}
}

func TestGCCycles(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	ctx := nsCtx("default")
	a := commit(t, ctx, cs, "a", []byte("a"), nil)
	b := commit(t, ctx, cs, "b", []byte("b"), map[string]string{gcRef + ".a": a.String()})
	c := commit(t, ctx, cs, "c", []byte("c"), map[string]string{gcRef + ".b": b.String()})
	// a -> c -> b -> a, and a -> a.
	if _, err := cs.Update(ctx, content.Info{Digest: a, Labels: map[string]string{gcRef + ".c": c.String(), gcRef + ".self": a.String()}}); err != nil {
		t.Fatal(err)
	}
	img := images.Image{Name: "cyclic", Target: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: b, Size: 1}}
	if _, err := e.db.Images().Create(ctx, img); err != nil {
		t.Fatal(err)
	}
	done := make(chan metadata.GCStats)
	go func() {
		st, _ := e.db.GarbageCollect(context.Background())
		done <- st
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("garbage collection of a reference cycle did not finish")
	}
	if got, want := e.blobsOnDisk(t), sorted(a, b, c); !reflect.DeepEqual(got, want) {
		t.Errorf("blobs on disk = %v, want the whole cycle %v", got, want)
	}
	// An unrooted cycle is garbage.
	if err := e.db.Images().Delete(ctx, "cyclic", images.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	if got := e.blobsOnDisk(t); len(got) != 0 {
		t.Errorf("blobs on disk after the cycle lost its root: %v", got)
	}
}

// Snapshot references and snapshot lease resources are followed without
// harm before any snapshotter exists.
func TestGCSnapshotReferences(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	lm := e.db.Leases()
	ctx := nsCtx("default")
	d := commit(t, ctx, cs, "cfg", []byte("config"), map[string]string{
		gcRoot: "x",
		"containerd.io/gc.ref.snapshot.overlayfs": "sha256:chain",
	})
	if _, err := lm.Create(ctx, leases.Lease{ID: "l"}); err != nil {
		t.Fatal(err)
	}
	if err := lm.AddResource(ctx, "l", leases.Resource{Type: "snapshots/overlayfs", ID: "extract-1"}); err != nil {
		t.Fatal(err)
	}
	e.gc(t)
	if !e.onDisk(t, d) {
		t.Errorf("gc.root blob with a snapshot reference collected")
	}
	got, _ := lm.ListResources(ctx, "l")
	if want := []leases.Resource{{Type: "snapshots/overlayfs", ID: "extract-1"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("lease resources after collection = %+v, want %+v", got, want)
	}
}
