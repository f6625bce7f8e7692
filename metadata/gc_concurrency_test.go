package metadata_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/content"
	"github.com/berth-dev/berth/content/local"
	"github.com/berth-dev/berth/images"
	"github.com/berth-dev/berth/leases"
	"github.com/berth-dev/berth/metadata"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// puller is one client of TestGCConcurrentMutations: it pulls images into
// its namespace the way containerd clients do (under a lease, shared
// layers first, then a labelled manifest and the image record), deletes
// some of them, and makes garbage, while collections run without pause.
type puller struct {
	db     *metadata.DB
	ns     string
	id     int
	layers [][]byte // shared with the other pullers
	rand   *rand.Rand

	live map[string]map[digest.Digest][]byte // image name -> its blobs
}

// put writes data under ref: with a descriptor (the share path) or without
// (the commit path). AlreadyExists is success: the namespace references
// the blob, and the lease of ctx holds it.
func (p *puller) put(ctx context.Context, ref string, data []byte, withDesc bool, lbls map[string]string) (digest.Digest, error) {
	cs := p.db.ContentStore()
	desc := ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}
	opts := []content.WriterOpt{content.WithRef(ref)}
	if withDesc {
		opts = append(opts, content.WithDescriptor(desc))
	}
	w, err := cs.Writer(ctx, opts...)
	if errdefs.IsAlreadyExists(err) {
		return desc.Digest, nil
	} else if err != nil {
		return "", fmt.Errorf("writer %s: %w", ref, err)
	}
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		return "", err
	}
	if err := w.Commit(ctx, desc.Size, desc.Digest, content.WithLabels(lbls)); err != nil && !errdefs.IsAlreadyExists(err) {
		return "", fmt.Errorf("commit %s: %w", ref, err)
	}
	return desc.Digest, nil
}

// pull writes image number i and records it as live.
func (p *puller) pull(ctx context.Context, i int) error {
	lm := p.db.Leases()
	leaseID := fmt.Sprintf("pull-%d-%d", p.id, i)
	if _, err := lm.Create(ctx, leases.Lease{ID: leaseID}); err != nil {
		return err
	}
	lctx := leases.WithLease(ctx, leaseID)
	blobs := map[digest.Digest][]byte{}
	lbls := map[string]string{}
	// One layer from the shared pool, picked at random, and one of its own.
	layers := [][]byte{p.layers[p.rand.IntN(len(p.layers))], []byte(fmt.Sprintf("layer of %s image %d of puller %d", p.ns, i, p.id))}
	for j, data := range layers {
		d, err := p.put(lctx, fmt.Sprintf("p%d-i%d-l%d", p.id, i, j), data, (i+j)%2 == 0, nil)
		if err != nil {
			return err
		}
		blobs[d] = data
		lbls[fmt.Sprintf("%s.l.%d", gcRef, j)] = d.String()
	}
	config := []byte(fmt.Sprintf("config of %s image %d of puller %d", p.ns, i, p.id))
	d, err := p.put(lctx, fmt.Sprintf("p%d-i%d-config", p.id, i), config, i%2 == 0, nil)
	if err != nil {
		return err
	}
	blobs[d] = config
	lbls[gcRef+".config"] = d.String()
	manifest := []byte(fmt.Sprintf("manifest of %s image %d of puller %d", p.ns, i, p.id))
	m, err := p.put(lctx, fmt.Sprintf("p%d-i%d-manifest", p.id, i), manifest, false, lbls)
	if err != nil {
		return err
	}
	blobs[m] = manifest
	name := fmt.Sprintf("puller%d/image:%d", p.id, i)
	img := images.Image{Name: name, Target: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: m, Size: int64(len(manifest))}}
	if _, err := p.db.Images().Create(ctx, img); err != nil {
		return err
	}
	// The image record holds everything now; the lease may go.
	if err := lm.Delete(ctx, leaseID, i%4 == 0); err != nil {
		return err
	}
	p.live[name] = blobs
	return p.check(ctx, name)
}

// check reads every blob of live image name back.
func (p *puller) check(ctx context.Context, name string) error {
	for d, want := range p.live[name] {
		got, err := readAll(ctx, p.db.ContentStore(), d)
		if err != nil || string(got) != string(want) {
			return fmt.Errorf("image %s in %s: blob %s: read %q, %v; want %q", name, p.ns, d, got, err, want)
		}
	}
	return nil
}

// litter makes garbage: an unreferenced blob, deleted again (a collection
// may have beaten us to it), and an aborted ingest. Before the delete, it
// rescues the garbage blob into another namespace under a lease, racing
// the collector: either the share wins and the lease keeps the blob, or
// the sweep wins and the bytes are written again.
func (p *puller) litter(ctx context.Context, i int) error {
	cs := p.db.ContentStore()
	junk := []byte(fmt.Sprintf("junk %d %d", p.id, i))
	d, err := p.put(ctx, fmt.Sprintf("p%d-i%d-junk", p.id, i), junk, false, nil)
	if err != nil {
		return err
	}
	if err := p.rescue(junk, i); err != nil {
		return err
	}
	if err := cs.Delete(ctx, d); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	ref := fmt.Sprintf("p%d-i%d-aborted", p.id, i)
	w, err := cs.Writer(ctx, content.WithRef(ref))
	if err != nil {
		return err
	}
	w.Write([]byte("partial"))
	w.Close()
	return cs.Abort(ctx, ref)
}

// rescue shares data into the "rescue" namespace under a lease and reads
// it back there, then lets go.
func (p *puller) rescue(data []byte, i int) error {
	ctx := nsCtx("rescue")
	id := fmt.Sprintf("rescue-%d-%d", p.id, i)
	if _, err := p.db.Leases().Create(ctx, leases.Lease{ID: id}); err != nil {
		return err
	}
	d, err := p.put(leases.WithLease(ctx, id), id, data, true, nil)
	if err != nil {
		return err
	}
	if got, err := readAll(ctx, p.db.ContentStore(), d); err != nil || string(got) != string(data) {
		return fmt.Errorf("rescued blob %s: read %q, %v; want %q", d, got, err, data)
	}
	return p.db.Leases().Delete(ctx, id, false)
}

func (p *puller) run(rounds int) error {
	ctx := nsCtx(p.ns)
	for i := range rounds {
		if err := p.pull(ctx, i); err != nil {
			return fmt.Errorf("puller %d round %d: %w", p.id, i, err)
		}
		// Keep few images alive, so that a shared layer often has a
		// single holder, which may let go while another puller shares it.
		if i > 0 {
			name := fmt.Sprintf("puller%d/image:%d", p.id, i-1)
			var opts []images.DeleteOpt
			if i%2 == 0 {
				opts = append(opts, images.SynchronousDelete())
			}
			if err := p.db.Images().Delete(ctx, name, opts...); err != nil {
				return fmt.Errorf("puller %d: delete %s: %w", p.id, name, err)
			}
			delete(p.live, name)
		}
		if err := p.litter(ctx, i); err != nil {
			return fmt.Errorf("puller %d round %d: %w", p.id, i, err)
		}
	}
	return nil
}

// TestGCConcurrentMutations runs collections back to back while pullers
// write, share, commit and delete content and images in two namespaces.
// Nothing referenced may be swept: every live image stays readable, and
// every reference left in the database has its backend blob. Run it with
// -race: it also checks DB.gcLock's design.
func TestGCConcurrentMutations(t *testing.T) {
	e := newEnv(t)
	var shared [][]byte
	for i := range 4 {
		shared = append(shared, []byte(fmt.Sprintf("shared base layer %d", i)))
	}
	const pullers, rounds = 4, 8
	ps := make([]*puller, pullers)
	for i := range ps {
		ps[i] = &puller{db: e.db, ns: []string{"default", "k8s.io"}[i%2], id: i, layers: shared, rand: rand.New(rand.NewPCG(uint64(i), 1)), live: map[string]map[digest.Digest][]byte{}}
	}

	stop := make(chan struct{})
	var collections atomic.Int64
	gcErr := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				gcErr <- nil
				return
			default:
			}
			if _, err := e.db.GarbageCollect(context.Background()); err != nil {
				gcErr <- err
				return
			}
			collections.Add(1)
		}
	}()
	errs := make([]error, pullers)
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Go(func() { errs[i] = p.run(rounds) })
	}
	wg.Wait()
	close(stop)
	if err := errors.Join(append(errs, <-gcErr)...); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d collections ran during the test", collections.Load())

	checkLive := func(when string) {
		t.Helper()
		cs := e.db.ContentStore()
		for _, p := range ps {
			for name, blobs := range p.live {
				for d, want := range blobs {
					got, err := readAll(nsCtx(p.ns), cs, d)
					if err != nil || string(got) != string(want) {
						t.Errorf("%s: image %s in %s: blob %s: read %q, %v; want %q", when, name, p.ns, d, got, err, want)
					}
				}
			}
		}
		checkReferencesBacked(t, e, when)
	}
	checkLive("after the run")
	e.gc(t)
	checkLive("after a final collection")
}

// checkReferencesBacked fails the test when a namespace references a blob
// the backend does not have.
func checkReferencesBacked(t *testing.T, e *env, when string) {
	t.Helper()
	nss, err := e.db.Namespaces().List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range nss {
		for _, d := range walk(t, e.db.ContentStore(), nsCtx(ns)) {
			if _, err := e.backend.Info(context.Background(), d); err != nil {
				t.Errorf("%s: namespace %s references %s, missing from the backend: %v", when, ns, d, err)
			}
		}
	}
}

// hookedStore is the local store with hooks after Info and before Writer,
// to run a collection inside the windows DB.gcLock must close.
type hookedStore struct {
	*local.Store
	afterInfo    func(digest.Digest)
	beforeWriter func()
}

func (h *hookedStore) Info(ctx context.Context, d digest.Digest) (content.Info, error) {
	info, err := h.Store.Info(ctx, d)
	if h.afterInfo != nil {
		h.afterInfo(d)
	}
	return info, err
}

func (h *hookedStore) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	if h.beforeWriter != nil {
		h.beforeWriter()
	}
	return h.Store.Writer(ctx, opts...)
}

// collectDuring starts a collection and gives it a moment: a caller that
// holds gcLock as it should keeps it waiting, and the collection runs
// after. wait returns once it has.
func collectDuring(t *testing.T, db *metadata.DB) (wait func()) {
	done := make(chan error, 1)
	go func() {
		_, err := db.GarbageCollect(context.Background())
		done <- err
	}()
	select {
	case err := <-done:
		t.Log("collection ran inside the window: gcLock is not held there")
		return func() {
			if err != nil {
				t.Error(err)
			}
		}
	case <-time.After(100 * time.Millisecond):
	}
	return func() {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// TestGCLockWindows runs a collection at the exact points where a sweep
// would lose data if DB.gcLock were not held: between the backend commit
// and the reference (nsWriter.Commit), between the check that a blob
// exists and the reference to it (shareExisting), and between the
// ingest record and the backend ingest (Writer).
func TestGCLockWindows(t *testing.T) {
	setup := func(t *testing.T) (*metadata.DB, *hookedStore) {
		dir := t.TempDir()
		backend, err := local.NewStore(filepath.Join(dir, "content"))
		if err != nil {
			t.Fatal(err)
		}
		h := &hookedStore{Store: backend}
		db, err := metadata.Open(filepath.Join(dir, "meta.db"), h)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db, h
	}
	ctx := nsCtx("default")

	t.Run("commit", func(t *testing.T) {
		db, h := setup(t)
		data := []byte("fresh blob")
		var wait func()
		h.afterInfo = func(d digest.Digest) {
			if wait == nil { // the Info after the backend commit
				wait = collectDuring(t, db)
			}
		}
		dgst := commit(t, ctx, db.ContentStore(), "r", data, map[string]string{gcRoot: "x"})
		wait()
		if got, err := readAll(ctx, db.ContentStore(), dgst); err != nil || string(got) != string(data) {
			t.Errorf("committed gc.root blob: read %q, %v", got, err)
		}
	})

	t.Run("share", func(t *testing.T) {
		db, h := setup(t)
		lm := db.Leases()
		data := []byte("garbage in a, wanted in b")
		dgst := commit(t, nsCtx("a"), db.ContentStore(), "r", data, nil)
		if _, err := lm.Create(ctx, leases.Lease{ID: "l"}); err != nil {
			t.Fatal(err)
		}
		var wait func()
		infos := 0
		h.afterInfo = func(d digest.Digest) {
			if infos++; infos == 2 { // the check again under the lock
				wait = collectDuring(t, db)
			}
		}
		_, err := db.ContentStore().Writer(leases.WithLease(ctx, "l"), content.WithRef("r"), content.WithDescriptor(descOf(data)))
		wantErr(t, err, isAlreadyExists)
		wait()
		if got, err := readAll(ctx, db.ContentStore(), dgst); err != nil || string(got) != string(data) {
			t.Errorf("shared, leased blob: read %q, %v", got, err)
		}
	})

	t.Run("writer", func(t *testing.T) {
		db, h := setup(t)
		var wait func()
		h.beforeWriter = func() {
			if wait == nil {
				wait = collectDuring(t, db)
			}
		}
		w, err := db.ContentStore().Writer(ctx, content.WithRef("upload"))
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		wait()
		if _, err := db.ContentStore().Status(ctx, "upload"); err != nil {
			t.Errorf("Status of the open ingest: %v", err)
		}
	})
}
