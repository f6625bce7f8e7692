package metadata

import (
	"context"
	"strings"

	"github.com/berth-dev/berth/gc"
	"github.com/berth-dev/berth/labels"
	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/snapshots"
	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
)

// snapshotNode names snapshot key of snapshotter sn in namespace ns.
func snapshotNode(ns, sn, key string) gc.Node {
	return gc.Node{Type: gc.ResourceSnapshot, Namespace: ns, Key: sn + "/" + key}
}

// snapshotRoots lists the snapshots kept whatever refers to them: active
// snapshots and views made outside any lease (someone is using them) and
// those labelled gc.root. Committed snapshots live through references:
// image configs' gc.ref.snapshot labels, leases, children. An active
// snapshot or view made under a lease lives as long as the lease, so that
// what an unpack interrupted by a crash left goes when its lease expires.
func snapshotRoots(ns string, nb *bolt.Bucket) []gc.Node {
	var roots []gc.Node
	forEachSnapshot(nb, func(sn string, key []byte, b *bolt.Bucket) {
		rec := readSnapshot(string(key), b)
		_, root := rec.labels[labels.GCRoot]
		inUse := rec.kind != snapshots.KindCommitted && b.Get(keyLeased) == nil
		if root || inUse {
			roots = append(roots, snapshotNode(ns, sn, rec.key))
		}
	})
	return roots
}

func forEachSnapshot(nb *bolt.Bucket, fn func(sn string, key []byte, b *bolt.Bucket)) {
	sb := nb.Bucket(bucketKeySnapshots)
	if sb == nil {
		return
	}
	_ = sb.ForEachBucket(func(sn []byte) error {
		b := sb.Bucket(sn)
		return b.ForEachBucket(func(key []byte) error {
			fn(string(sn), key, b.Bucket(key))
			return nil
		})
	})
}

// snapshotReferences returns what snapshot node n keeps alive: its parent
// and its gc.ref labels.
func snapshotReferences(tx *bolt.Tx, n gc.Node) []gc.Node {
	sn, key, ok := strings.Cut(n.Key, "/")
	if !ok {
		return nil
	}
	b := bucket(tx, []byte(n.Namespace), bucketKeySnapshots, []byte(sn), []byte(key))
	if b == nil {
		return nil
	}
	rec := readSnapshot(key, b)
	refs := labelRefs(n.Namespace, rec.labels)
	if rec.parent != "" {
		refs = append(refs, snapshotNode(n.Namespace, sn, rec.parent))
	}
	return refs
}

// sweepSnapshots removes the unreached snapshots of every namespace,
// children before parents, from the records and the backends. It returns
// the backend keys still recorded, by snapshotter.
func (db *DB) sweepSnapshots(ctx context.Context, tx *bolt.Tx, reached map[gc.Node]struct{}, st *GCStats) (map[string]map[string]struct{}, error) {
	kept := map[string]map[string]struct{}{}
	for name := range db.snapshotters {
		kept[name] = map[string]struct{}{}
	}
	err := forEachNamespace(tx, func(ns string, nb *bolt.Bucket) error {
		var doomed []*snapshotRecord
		var doomedIn []string
		forEachSnapshot(nb, func(sn string, key []byte, b *bolt.Bucket) {
			rec := readSnapshot(string(key), b)
			if _, ok := reached[snapshotNode(ns, sn, rec.key)]; ok {
				if kept[sn] != nil {
					kept[sn][rec.backendKey] = struct{}{}
				}
				return
			}
			doomed, doomedIn = append(doomed, rec), append(doomedIn, sn)
		})
		return db.removeSnapshots(ctx, nb, doomed, doomedIn, st)
	})
	return kept, err
}

// removeSnapshots removes records (and backend snapshots) leaves first.
// The doomed set is closed under children: a reached child would have
// reached its parent.
func (db *DB) removeSnapshots(ctx context.Context, nb *bolt.Bucket, doomed []*snapshotRecord, in []string, st *GCStats) error {
	for len(doomed) > 0 {
		var rest []*snapshotRecord
		var restIn []string
		for i, rec := range doomed {
			sb := nb.Bucket(bucketKeySnapshots).Bucket([]byte(in[i]))
			if countKeys(sb.Bucket([]byte(rec.key)).Bucket(keyChildren)) > 0 {
				rest, restIn = append(rest, rec), append(restIn, in[i])
				continue
			}
			s := &SnapshotStore{db: db, name: in[i]}
			if err := s.unlink(sb, rec); err != nil {
				return err
			}
			if be := db.snapshotters[in[i]]; be != nil {
				if err := be.Remove(ctx, rec.backendKey); err != nil && !errdefs.IsNotFound(err) {
					log.G(ctx).Warn("gc: remove snapshot", "snapshotter", in[i], "key", rec.backendKey, "error", err)
				}
			}
			st.Snapshots++
		}
		if len(rest) == len(doomed) {
			break // a cycle cannot happen; stop rather than spin
		}
		doomed, in = rest, restIn
	}
	return nil
}

// sweepBackendSnapshots removes backend snapshots no namespace records,
// such as those a crash left between the backend and the database.
func (db *DB) sweepBackendSnapshots(ctx context.Context, kept map[string]map[string]struct{}, st *GCStats) {
	for name, be := range db.snapshotters {
		var orphans []snapshots.Info
		_ = be.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
			if _, ok := kept[name][info.Name]; !ok {
				orphans = append(orphans, info)
			}
			return nil
		})
		removeLeavesFirst(ctx, be, orphans, st)
	}
}

func removeLeavesFirst(ctx context.Context, be snapshots.Snapshotter, infos []snapshots.Info, st *GCStats) {
	for len(infos) > 0 {
		parents := map[string]bool{}
		for _, info := range infos {
			parents[info.Parent] = true
		}
		var rest []snapshots.Info
		for _, info := range infos {
			if parents[info.Name] {
				rest = append(rest, info)
				continue
			}
			if err := be.Remove(ctx, info.Name); err != nil && !errdefs.IsNotFound(err) {
				log.G(ctx).Warn("gc: remove orphan snapshot", "key", info.Name, "error", err)
				return
			}
			st.Snapshots++
		}
		if len(rest) == len(infos) {
			return
		}
		infos = rest
	}
}
