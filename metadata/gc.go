package metadata

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/berth-dev/berth/content"
	"github.com/berth-dev/berth/gc"
	"github.com/berth-dev/berth/labels"
	"github.com/berth-dev/berth/log"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// IngestExpiry is how long an ingest made outside any lease is kept after
// its last write, so that an interrupted upload can be resumed. Ingests made
// under a lease live exactly as long as the lease.
var IngestExpiry = 24 * time.Hour

// GCStats reports one collection.
type GCStats struct {
	Duration       time.Duration
	ContentRefs    int // namespace references to blobs removed
	Ingests        int // ingests removed
	Leases         int // expired leases removed
	Blobs          int // backend blobs removed
	Snapshots      int // snapshots removed (namespace records and backend orphans)
	BytesReclaimed int64
}

// errNothingSwept rolls back the transaction of a collection that removed
// nothing.
var errNothingSwept = errors.New("nothing swept")

// afterDelete runs a collection now when sync, else tells the scheduler.
func (db *DB) afterDelete(ctx context.Context, sync bool) error {
	if sync {
		_, err := db.GarbageCollect(ctx)
		return err
	}
	db.mutated()
	return nil
}

// GarbageCollect marks from every namespace's roots, removes the
// unreachable references, then the backend blobs and ingests that no
// namespace refers to. Nothing is created while it runs.
func (db *DB) GarbageCollect(ctx context.Context) (GCStats, error) {
	start := time.Now()
	db.gcLock.Lock()
	defer db.gcLock.Unlock()
	var st GCStats
	var kept *liveSet
	var keptSnapshots map[string]map[string]struct{}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		var err error
		if st.Leases, err = removeExpiredLeases(tx, start); err != nil {
			return err
		}
		roots, err := db.scanRoots(ctx, tx, start)
		if err != nil {
			return err
		}
		reached, err := gc.Tricolor(roots, func(n gc.Node) ([]gc.Node, error) { return references(tx, n), nil })
		if err != nil {
			return err
		}
		if kept, err = sweepReferences(tx, reached, &st); err != nil {
			return err
		}
		if keptSnapshots, err = db.sweepSnapshots(ctx, tx, reached, &st); err != nil {
			return err
		}
		if st.Leases+st.ContentRefs+st.Ingests+st.Snapshots == 0 {
			// Nothing to commit: roll back rather than write and sync
			// an unchanged database (most collections after a delete).
			return errNothingSwept
		}
		return nil
	})
	if errors.Is(err, errNothingSwept) {
		err = nil
	}
	if err != nil {
		return st, fmt.Errorf("garbage collection: %w", err)
	}
	db.sweepBackend(ctx, kept, &st)
	db.sweepBackendSnapshots(ctx, keptSnapshots, &st)
	st.Duration = time.Since(start)
	log.G(ctx).Debug("garbage collection done", "duration", st.Duration, "content_refs", st.ContentRefs,
		"ingests", st.Ingests, "leases", st.Leases, "blobs", st.Blobs, "snapshots", st.Snapshots, "bytes", st.BytesReclaimed)
	return st, nil
}

func removeExpiredLeases(tx *bolt.Tx, now time.Time) (int, error) {
	removed := 0
	err := forEachNamespace(tx, func(ns string, nb *bolt.Bucket) error {
		lb := nb.Bucket(bucketKeyLeases)
		if lb == nil {
			return nil
		}
		var expired [][]byte
		_ = lb.ForEachBucket(func(id []byte) error {
			exp := readMap(lb.Bucket(id), bucketKeyLabels)[labels.GCExpire]
			if t, err := time.Parse(time.RFC3339Nano, exp); err == nil && now.After(t) {
				expired = append(expired, id)
			}
			return nil
		})
		for _, id := range expired {
			if err := lb.DeleteBucket(id); err != nil {
				return err
			}
			removed++
		}
		return nil
	})
	return removed, err
}

// scanRoots lists the roots of every namespace: image targets, leased
// resources, gc.root blobs and recent unleased ingests.
func (db *DB) scanRoots(ctx context.Context, tx *bolt.Tx, now time.Time) ([]gc.Node, error) {
	var roots []gc.Node
	err := forEachNamespace(tx, func(ns string, nb *bolt.Bucket) error {
		roots = append(roots, imageRoots(ns, nb)...)
		roots = append(roots, leaseRoots(ns, nb)...)
		roots = append(roots, snapshotRoots(ns, nb)...)
		roots = append(roots, containerRoots(ns, nb)...)
		if cb := nb.Bucket(bucketKeyContent); cb != nil {
			roots = append(roots, blobRoots(ns, cb.Bucket(bucketKeyBlob))...)
			roots = append(roots, db.ingestRoots(ctx, ns, cb.Bucket(bucketKeyIngests), now)...)
		}
		return nil
	})
	return roots, err
}

func imageRoots(ns string, nb *bolt.Bucket) []gc.Node {
	var roots []gc.Node
	if ib := nb.Bucket(bucketKeyImages); ib != nil {
		_ = ib.ForEachBucket(func(name []byte) error {
			img := readImage(string(name), ib.Bucket(name))
			roots = append(roots, gc.Node{Type: gc.ResourceContent, Namespace: ns, Key: img.Target.Digest.String()})
			roots = append(roots, labelRefs(ns, img.Labels)...)
			return nil
		})
	}
	return roots
}

func leaseRoots(ns string, nb *bolt.Bucket) []gc.Node {
	var roots []gc.Node
	if lb := nb.Bucket(bucketKeyLeases); lb != nil {
		_ = lb.ForEachBucket(func(id []byte) error {
			for _, r := range leaseResources(lb.Bucket(id)) {
				n := gc.Node{Namespace: ns, Key: r.ID}
				switch {
				case r.Type == resourceContent:
					n.Type = gc.ResourceContent
				case r.Type == resourceIngests:
					n.Type = gc.ResourceIngest
				default:
					n.Type, n.Key = gc.ResourceSnapshot, strings.TrimPrefix(r.Type, resourceSnapshots+"/")+"/"+r.ID
				}
				roots = append(roots, n)
			}
			return nil
		})
	}
	return roots
}

func blobRoots(ns string, bb *bolt.Bucket) []gc.Node {
	var roots []gc.Node
	if bb == nil {
		return nil
	}
	_ = bb.ForEachBucket(func(dgst []byte) error {
		if _, ok := readMap(bb.Bucket(dgst), bucketKeyLabels)[labels.GCRoot]; ok {
			roots = append(roots, gc.Node{Type: gc.ResourceContent, Namespace: ns, Key: string(dgst)})
		}
		return nil
	})
	return roots
}

func (db *DB) ingestRoots(ctx context.Context, ns string, ib *bolt.Bucket, now time.Time) []gc.Node {
	var roots []gc.Node
	if ib == nil {
		return nil
	}
	_ = ib.ForEachBucket(func(ref []byte) error {
		if ib.Bucket(ref).Get(keyLeased) != nil {
			return nil // lives as long as its lease
		}
		st, err := db.backend.Status(ctx, backendRef(ns, string(ref)))
		switch {
		case errdefs.IsNotFound(err):
			// The backend ingest is gone (a process died between its commit
			// or abort and the record's removal): the record is garbage.
			// Writer and Commit change both under gcLock, so a sweep never
			// sees one without the other while they run.
		case err != nil || now.Sub(st.UpdatedAt) < IngestExpiry:
			roots = append(roots, gc.Node{Type: gc.ResourceIngest, Namespace: ns, Key: string(ref)})
		}
		return nil
	})
	return roots
}

// references returns what node n keeps alive: a blob's gc.ref labels.
func references(tx *bolt.Tx, n gc.Node) []gc.Node {
	if n.Type == gc.ResourceSnapshot {
		return snapshotReferences(tx, n)
	}
	if n.Type != gc.ResourceContent {
		return nil
	}
	b := bucket(tx, []byte(n.Namespace), bucketKeyContent, bucketKeyBlob, []byte(n.Key))
	if b == nil {
		return nil
	}
	return labelRefs(n.Namespace, readMap(b, bucketKeyLabels))
}

// labelRefs turns containerd.io/gc.ref.* labels into nodes.
func labelRefs(ns string, lbls map[string]string) []gc.Node {
	var out []gc.Node
	for k, v := range lbls {
		switch {
		case k == labels.GCRefContent || strings.HasPrefix(k, labels.GCRefContent+"."):
			if _, err := digest.Parse(v); err == nil {
				out = append(out, gc.Node{Type: gc.ResourceContent, Namespace: ns, Key: v})
			}
		case strings.HasPrefix(k, labels.GCRefSnapshot+"."):
			name := strings.SplitN(strings.TrimPrefix(k, labels.GCRefSnapshot+"."), "/", 2)[0]
			out = append(out, gc.Node{Type: gc.ResourceSnapshot, Namespace: ns, Key: name + "/" + v})
		}
	}
	return out
}

// liveSet is what survived the sweep: the blobs and backend ingest refs
// some namespace still refers to.
type liveSet struct {
	blobs   map[digest.Digest]struct{}
	ingests map[string]struct{}
}

func sweepReferences(tx *bolt.Tx, reached map[gc.Node]struct{}, st *GCStats) (*liveSet, error) {
	kept := &liveSet{blobs: map[digest.Digest]struct{}{}, ingests: map[string]struct{}{}}
	err := forEachNamespace(tx, func(ns string, nb *bolt.Bucket) error {
		cb := nb.Bucket(bucketKeyContent)
		if cb == nil {
			return nil
		}
		n, err := sweepBucket(cb.Bucket(bucketKeyBlob), func(k []byte) bool {
			_, ok := reached[gc.Node{Type: gc.ResourceContent, Namespace: ns, Key: string(k)}]
			if ok {
				kept.blobs[digest.Digest(k)] = struct{}{}
			}
			return ok
		})
		st.ContentRefs += n
		if err != nil {
			return err
		}
		n, err = sweepBucket(cb.Bucket(bucketKeyIngests), func(k []byte) bool {
			_, ok := reached[gc.Node{Type: gc.ResourceIngest, Namespace: ns, Key: string(k)}]
			if ok {
				kept.ingests[backendRef(ns, string(k))] = struct{}{}
			}
			return ok
		})
		st.Ingests += n
		return err
	})
	return kept, err
}

// sweepBucket deletes the sub-buckets of b for which keep is false.
func sweepBucket(b *bolt.Bucket, keep func([]byte) bool) (int, error) {
	if b == nil {
		return 0, nil
	}
	var doomed [][]byte
	_ = b.ForEachBucket(func(k []byte) error {
		if !keep(k) {
			doomed = append(doomed, append([]byte(nil), k...))
		}
		return nil
	})
	for _, k := range doomed {
		if err := b.DeleteBucket(k); err != nil {
			return 0, err
		}
	}
	return len(doomed), nil
}

// sweepBackend removes the backend blobs and ingests outside kept. A
// failure to remove one is logged and retried at the next collection.
func (db *DB) sweepBackend(ctx context.Context, kept *liveSet, st *GCStats) {
	var doomed []content.Info
	_ = db.backend.Walk(ctx, func(info content.Info) error {
		if _, ok := kept.blobs[info.Digest]; !ok {
			doomed = append(doomed, info)
		}
		return nil
	})
	for _, info := range doomed {
		if err := db.backend.Delete(ctx, info.Digest); err != nil && !errdefs.IsNotFound(err) {
			log.G(ctx).Warn("gc: remove blob", "digest", info.Digest, "error", err)
			continue
		}
		st.Blobs++
		st.BytesReclaimed += info.Size
	}
	statuses, err := db.backend.ListStatuses(ctx)
	if err != nil {
		log.G(ctx).Warn("gc: list ingests", "error", err)
		return
	}
	for _, s := range statuses {
		if _, ok := kept.ingests[s.Ref]; ok {
			continue
		}
		// An ingest being written right now is locked: leave it.
		if err := db.backend.Abort(ctx, s.Ref); err == nil {
			st.BytesReclaimed += s.Offset
		}
	}
}

func forEachNamespace(tx *bolt.Tx, fn func(ns string, nb *bolt.Bucket) error) error {
	v := tx.Bucket(bucketKeyVersion)
	return v.ForEachBucket(func(k []byte) error {
		return fn(string(k), v.Bucket(k))
	})
}
