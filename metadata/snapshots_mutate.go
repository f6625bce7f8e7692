package metadata

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/berth-dev/berth/labels"
	"github.com/berth-dev/berth/leases"
	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/namespaces"
	"github.com/berth-dev/berth/snapshots"
	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
)

// create makes active snapshot or view key over parent, in the backend and
// in the namespace, in one transaction: if recording fails, the backend
// snapshot is removed again.
func (s *SnapshotStore) create(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) ([]mount.Mount, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	info, err := applySnapshotOpts(ns, key, opts)
	if err != nil {
		return nil, err
	}
	var mounts []mount.Mount
	err = s.db.update(func(tx *bolt.Tx) error {
		sb, bkey, bparent, err := s.reserve(tx, ns, key, parent)
		if err != nil {
			return err
		}
		if kind == snapshots.KindView {
			mounts, err = s.backend.View(ctx, bkey, bparent)
		} else {
			mounts, err = s.backend.Prepare(ctx, bkey, bparent)
		}
		if err != nil {
			return fmt.Errorf("%s snapshot %q in namespace %q: %w", strings.ToLower(kind.String()), key, ns, err)
		}
		rec := &snapshotRecord{key: key, backendKey: bkey, parent: parent, kind: kind, labels: info.Labels}
		if err := s.write(ctx, tx, sb, ns, rec); err != nil {
			_ = s.backend.Remove(ctx, bkey)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.db.publish(ctx, "/snapshot/prepare", &eventstypes.SnapshotPrepare{Key: key, Parent: parent, Snapshotter: s.name})
	return mounts, nil
}

// reserve checks that key is free and parent is a committed snapshot of
// namespace ns, and returns the namespace's snapshot bucket and the
// backend names.
func (s *SnapshotStore) reserve(tx *bolt.Tx, ns, key, parent string) (*bolt.Bucket, string, string, error) {
	sb, err := createBucket(tx, s.bucketPath(ns)...)
	if err != nil {
		return nil, "", "", err
	}
	if sb.Bucket([]byte(key)) != nil {
		return nil, "", "", fmt.Errorf("snapshot %q in namespace %q: %w", key, ns, errdefs.ErrAlreadyExists)
	}
	var bparent string
	if parent != "" {
		pb := sb.Bucket([]byte(parent))
		if pb == nil {
			return nil, "", "", fmt.Errorf("parent of %q: %w", key, s.db.notFoundElsewhere(tx, ns, "snapshot", parent, append(s.bucketPath(ns)[1:], []byte(parent))...))
		}
		if kind := snapshots.ParseKind(string(pb.Get(keyKind))); kind != snapshots.KindCommitted {
			return nil, "", "", fmt.Errorf("parent %q of snapshot %q in namespace %q is %s, not committed: %w",
				parent, key, ns, strings.ToLower(kind.String()), errdefs.ErrInvalidArgument)
		}
		bparent = string(pb.Get(keyName))
	}
	seq, err := sb.NextSequence()
	if err != nil {
		return nil, "", "", err
	}
	return sb, fmt.Sprintf("%s/%d/%s", ns, seq, key), bparent, nil
}

// write writes rec into sb, links it under its parent and into the
// context's lease. A snapshot made under a lease is marked so: an active
// snapshot or view lives as long as its lease, not for ever.
func (s *SnapshotStore) write(ctx context.Context, tx *bolt.Tx, sb *bolt.Bucket, ns string, rec *snapshotRecord) error {
	b, err := sb.CreateBucket([]byte(rec.key))
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	for k, v := range map[string]string{string(keyName): rec.backendKey, string(keyParent): rec.parent, string(keyKind): rec.kind.String()} {
		if v == "" {
			continue
		}
		if err := b.Put([]byte(k), []byte(v)); err != nil {
			return err
		}
	}
	if err := writeTimestamps(b, now, now); err != nil {
		return err
	}
	if err := writeMap(b, bucketKeyLabels, rec.labels); err != nil {
		return err
	}
	if _, leased := leases.FromContext(ctx); leased {
		if err := b.Put(keyLeased, []byte{1}); err != nil {
			return err
		}
	}
	if rec.parent != "" {
		cb, err := sb.Bucket([]byte(rec.parent)).CreateBucketIfNotExists(keyChildren)
		if err != nil {
			return err
		}
		if err := cb.Put([]byte(rec.key), nil); err != nil {
			return err
		}
	}
	return addToContextLease(ctx, tx, ns, s.resource(rec.key))
}

// resource is snapshot key as a lease resource.
func (s *SnapshotStore) resource(key string) leases.Resource {
	return leases.Resource{Type: resourceSnapshots + "/" + s.name, ID: key}
}

// Commit turns active snapshot key into committed snapshot name; key
// leaves the context's lease and name joins it.
func (s *SnapshotStore) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	info, err := applySnapshotOpts(ns, name, opts)
	if err != nil {
		return err
	}
	err = s.db.update(func(tx *bolt.Tx) error {
		active, err := s.get(tx, ns, key)
		if err != nil {
			return err
		}
		if active.kind != snapshots.KindActive {
			return fmt.Errorf("cannot commit snapshot %q in namespace %q: it is %s, not active: %w", key, ns, strings.ToLower(active.kind.String()), errdefs.ErrFailedPrecondition)
		}
		sb, bname, _, err := s.reserve(tx, ns, name, "")
		if err != nil {
			return err
		}
		if err := s.backend.Commit(ctx, bname, active.backendKey); err != nil {
			return fmt.Errorf("commit snapshot %q as %q in namespace %q: %w", key, name, ns, err)
		}
		if err := s.unlink(sb, active); err != nil {
			return err
		}
		if err := removeFromContextLease(ctx, tx, ns, s.resource(key)); err != nil {
			return err
		}
		return s.write(ctx, tx, sb, ns, &snapshotRecord{key: name, backendKey: bname, parent: active.parent, kind: snapshots.KindCommitted, labels: info.Labels})
	})
	if err != nil {
		return err
	}
	s.db.publish(ctx, "/snapshot/commit", &eventstypes.SnapshotCommit{Key: key, Name: name, Snapshotter: s.name})
	return nil
}

// unlink removes rec's record and its entry among its parent's children.
func (s *SnapshotStore) unlink(sb *bolt.Bucket, rec *snapshotRecord) error {
	if rec.parent != "" {
		if cb := sb.Bucket([]byte(rec.parent)).Bucket(keyChildren); cb != nil {
			if err := cb.Delete([]byte(rec.key)); err != nil {
				return err
			}
		}
	}
	return sb.DeleteBucket([]byte(rec.key))
}

// Remove deletes snapshot key from the namespace, the backend and the
// context's lease; a snapshot with children cannot be removed. The
// garbage collector is told, as the parents may be unreferenced now.
func (s *SnapshotStore) Remove(ctx context.Context, key string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	err = s.db.update(func(tx *bolt.Tx) error {
		rec, err := s.get(tx, ns, key)
		if err != nil {
			return err
		}
		sb := bucket(tx, s.bucketPath(ns)...)
		if n := countKeys(sb.Bucket([]byte(key)).Bucket(keyChildren)); n > 0 {
			return fmt.Errorf("cannot remove snapshot %q in namespace %q: %d snapshot(s) descend from it; remove them first: %w", key, ns, n, errdefs.ErrFailedPrecondition)
		}
		if err := s.unlink(sb, rec); err != nil {
			return err
		}
		if err := removeFromContextLease(ctx, tx, ns, s.resource(key)); err != nil {
			return err
		}
		if err := s.backend.Remove(ctx, rec.backendKey); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove snapshot %q in namespace %q: %w", key, ns, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.db.publish(ctx, "/snapshot/remove", &eventstypes.SnapshotRemove{Key: key, Snapshotter: s.name})
	// Its parents may now be unreferenced.
	return s.db.afterDelete(ctx, false)
}

func applySnapshotOpts(ns, key string, opts []snapshots.Opt) (snapshots.Info, error) {
	var info snapshots.Info
	for _, o := range opts {
		if err := o(&info); err != nil {
			return info, err
		}
	}
	if key == "" {
		return info, fmt.Errorf("snapshot key in namespace %q must not be empty: %w", ns, errdefs.ErrInvalidArgument)
	}
	if err := labels.ValidateAll(info.Labels); err != nil {
		return info, fmt.Errorf("snapshot %q in namespace %q: %w", key, ns, err)
	}
	return info, nil
}
