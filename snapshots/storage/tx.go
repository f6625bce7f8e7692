package storage

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/filters"
	"github.com/berth-dev/berth/labels"
	"github.com/berth-dev/berth/snapshots"
	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
)

var (
	keyID          = []byte("id")
	keyKind        = []byte("kind")
	keyParent      = []byte("parent")
	keyCreated     = []byte("created")
	keyUpdated     = []byte("updated")
	keySize        = []byte("size")
	keyInodes      = []byte("inodes")
	bucketLabels   = []byte("labels")
	bucketChildren = []byte("children")
)

// Tx is a MetaStore transaction, valid only inside the function given to
// View or Update.
type Tx struct{ b *bolt.Bucket }

// Snapshot is what a snapshotter needs to build the mounts of an active
// snapshot or a view.
type Snapshot struct {
	ID   string
	Kind snapshots.Kind
	// ParentIDs are the IDs of the parent chain, nearest first.
	ParentIDs []string
}

// record is one snapshot as stored.
type record struct {
	id    uint64
	info  snapshots.Info
	usage snapshots.Usage
}

// GetInfo returns the ID, info and recorded usage of snapshot key.
func (tx *Tx) GetInfo(key string) (string, snapshots.Info, snapshots.Usage, error) {
	_, rec, err := tx.read(key)
	if err != nil {
		return "", snapshots.Info{}, snapshots.Usage{}, err
	}
	return formatID(rec.id), rec.info, rec.usage, nil
}

// GetSnapshot returns active snapshot or view key with its parent chain.
func (tx *Tx) GetSnapshot(key string) (Snapshot, error) {
	_, rec, err := tx.read(key)
	if err != nil {
		return Snapshot{}, err
	}
	if k := rec.info.Kind; k != snapshots.KindActive && k != snapshots.KindView {
		return Snapshot{}, fmt.Errorf("snapshot %q is committed: only active snapshots and views have mounts: %w", key, errdefs.ErrFailedPrecondition)
	}
	parents, err := tx.parentIDs(rec.info.Parent)
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %q: %w", key, err)
	}
	return Snapshot{ID: formatID(rec.id), Kind: rec.info.Kind, ParentIDs: parents}, nil
}

// CreateSnapshot records a new active snapshot or view key over committed
// parent ("" for none). opts may set labels.
func (tx *Tx) CreateSnapshot(kind snapshots.Kind, key, parent string, opts ...snapshots.Opt) (Snapshot, error) {
	if kind != snapshots.KindActive && kind != snapshots.KindView {
		return Snapshot{}, fmt.Errorf("snapshot %q: cannot create a snapshot of kind %v: %w", key, kind, errdefs.ErrInvalidArgument)
	}
	if key == "" {
		return Snapshot{}, fmt.Errorf("snapshot key must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	info, err := applyOpts(key, opts)
	if err != nil {
		return Snapshot{}, err
	}
	var pb *bolt.Bucket
	if parent != "" {
		if pb = tx.b.Bucket([]byte(parent)); pb == nil {
			return Snapshot{}, fmt.Errorf("parent %q: %w", parent, errdefs.ErrNotFound)
		}
		if readKind(pb) != snapshots.KindCommitted {
			return Snapshot{}, fmt.Errorf("parent %q is not committed: %w", parent, errdefs.ErrInvalidArgument)
		}
	}
	if tx.b.Bucket([]byte(key)) != nil {
		return Snapshot{}, fmt.Errorf("snapshot %q: %w", key, errdefs.ErrAlreadyExists)
	}
	id, err := tx.b.NextSequence()
	if err != nil {
		return Snapshot{}, err
	}
	now := time.Now().UTC()
	info.Kind, info.Parent, info.Created, info.Updated = kind, parent, now, now
	if err := tx.put(record{id: id, info: info}); err != nil {
		return Snapshot{}, err
	}
	if pb != nil {
		if err := addChild(pb, key); err != nil {
			return Snapshot{}, err
		}
	}
	parents, err := tx.parentIDs(parent)
	if err != nil {
		return Snapshot{}, err
	}
	return Snapshot{ID: formatID(id), Kind: kind, ParentIDs: parents}, nil
}

// CommitActive turns active snapshot key into committed snapshot name,
// with the same ID and parent, the labels of opts and usage. It returns
// the ID.
func (tx *Tx) CommitActive(key, name string, usage snapshots.Usage, opts ...snapshots.Opt) (string, error) {
	if name == "" {
		return "", fmt.Errorf("commit of %q: name must not be empty: %w", key, errdefs.ErrInvalidArgument)
	}
	if tx.b.Bucket([]byte(name)) != nil {
		return "", fmt.Errorf("snapshot %q: %w", name, errdefs.ErrAlreadyExists)
	}
	_, rec, err := tx.read(key)
	if err != nil {
		return "", err
	}
	switch rec.info.Kind {
	case snapshots.KindView:
		return "", fmt.Errorf("cannot commit %q: it is a view: %w", key, errdefs.ErrFailedPrecondition)
	case snapshots.KindCommitted:
		return "", fmt.Errorf("cannot commit %q: it is already committed: %w", key, errdefs.ErrFailedPrecondition)
	}
	// The committed snapshot gets the labels of opts only, as in containerd.
	info, err := applyOpts(name, opts)
	if err != nil {
		return "", err
	}
	now := time.Now().UTC()
	info.Kind, info.Parent, info.Created, info.Updated = snapshots.KindCommitted, rec.info.Parent, now, now
	if err := tx.b.DeleteBucket([]byte(key)); err != nil {
		return "", err
	}
	if err := tx.put(record{id: rec.id, info: info, usage: usage}); err != nil {
		return "", err
	}
	if info.Parent != "" {
		pb := tx.b.Bucket([]byte(info.Parent))
		if pb == nil {
			return "", fmt.Errorf("parent %q of %q: %w", info.Parent, key, errdefs.ErrNotFound)
		}
		if err := pb.Bucket(bucketChildren).Delete([]byte(key)); err != nil {
			return "", err
		}
		if err := addChild(pb, name); err != nil {
			return "", err
		}
	}
	return formatID(rec.id), nil
}

// Remove deletes snapshot key, which may not have children, and returns
// its ID and kind so that the snapshotter removes its storage.
func (tx *Tx) Remove(key string) (string, snapshots.Kind, error) {
	b, rec, err := tx.read(key)
	if err != nil {
		return "", snapshots.KindUnknown, err
	}
	if c := b.Bucket(bucketChildren); c != nil {
		if k, _ := c.Cursor().First(); k != nil {
			return "", snapshots.KindUnknown, fmt.Errorf("cannot remove %q: it has children: %w", key, errdefs.ErrFailedPrecondition)
		}
	}
	if p := rec.info.Parent; p != "" {
		if pb := tx.b.Bucket([]byte(p)); pb != nil {
			if err := pb.Bucket(bucketChildren).Delete([]byte(key)); err != nil {
				return "", snapshots.KindUnknown, err
			}
		}
	}
	if err := tx.b.DeleteBucket([]byte(key)); err != nil {
		return "", snapshots.KindUnknown, err
	}
	return formatID(rec.id), rec.info.Kind, nil
}

// UpdateInfo changes the labels of snapshot info.Name, the only mutable
// field: fieldpath "labels" replaces them all, "labels.KEY" sets KEY from
// info.Labels or, when absent or empty there, deletes it; no fieldpaths
// replace them all.
func (tx *Tx) UpdateInfo(info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	if info.Name == "" {
		return snapshots.Info{}, fmt.Errorf("snapshot name is required for update: %w", errdefs.ErrInvalidArgument)
	}
	_, rec, err := tx.read(info.Name)
	if err != nil {
		return snapshots.Info{}, err
	}
	if rec.info.Labels, err = mergeLabels(info.Name, rec.info.Labels, info.Labels, fieldpaths); err != nil {
		return snapshots.Info{}, err
	}
	if err := labels.ValidateAll(rec.info.Labels); err != nil {
		return snapshots.Info{}, fmt.Errorf("snapshot %q: %w", info.Name, err)
	}
	rec.info.Updated = time.Now().UTC()
	if err := tx.put(rec); err != nil {
		return snapshots.Info{}, err
	}
	return rec.info, nil
}

func mergeLabels(name string, cur, upd map[string]string, fieldpaths []string) (map[string]string, error) {
	if len(fieldpaths) == 0 {
		return maps.Clone(upd), nil
	}
	for _, p := range fieldpaths {
		key, isLabel := strings.CutPrefix(p, "labels.")
		switch {
		case p == "labels":
			cur = maps.Clone(upd)
		case isLabel && key != "":
			if v := upd[key]; v != "" {
				if cur == nil {
					cur = map[string]string{}
				}
				cur[key] = v
			} else {
				delete(cur, key)
			}
		default:
			return nil, fmt.Errorf("snapshot %q: cannot update field %q (only labels and labels.KEY): %w", name, p, errdefs.ErrInvalidArgument)
		}
	}
	return cur, nil
}

// WalkInfo calls fn, inside the transaction, for each snapshot matching
// any of fs (containerd filter syntax over kind, name, parent, labels).
func (tx *Tx) WalkInfo(ctx context.Context, fn snapshots.WalkFunc, fs ...string) error {
	filter, err := filters.Parse(fs...)
	if err != nil {
		return err
	}
	return tx.b.ForEachBucket(func(k []byte) error {
		rec, err := readRecord(string(k), tx.b.Bucket(k))
		if err != nil {
			return err
		}
		if !filter.Match(adapt(rec.info)) {
			return nil
		}
		return fn(ctx, rec.info)
	})
}

// IDMap returns the key or name of every snapshot by ID.
func (tx *Tx) IDMap() (map[string]string, error) {
	ids := map[string]string{}
	err := tx.b.ForEachBucket(func(k []byte) error {
		ids[formatID(readID(tx.b.Bucket(k)))] = string(k)
		return nil
	})
	return ids, err
}

func adapt(info snapshots.Info) filters.Adaptor {
	return filters.AdaptorFunc(func(fieldpath []string) (string, bool) {
		if len(fieldpath) == 0 {
			return "", false
		}
		switch fieldpath[0] {
		case "kind":
			return strings.ToLower(info.Kind.String()), info.Kind != snapshots.KindUnknown
		case "name":
			return info.Name, true
		case "parent":
			// Present even when empty, as in containerd.
			return info.Parent, true
		case "labels":
			v, ok := info.Labels[strings.Join(fieldpath[1:], ".")]
			return v, ok
		}
		return "", false
	})
}

// applyOpts returns the Info that opts make; only their labels are kept.
func applyOpts(name string, opts []snapshots.Opt) (snapshots.Info, error) {
	var base snapshots.Info
	for _, opt := range opts {
		if err := opt(&base); err != nil {
			return snapshots.Info{}, fmt.Errorf("snapshot %q: %w", name, err)
		}
	}
	if err := labels.ValidateAll(base.Labels); err != nil {
		return snapshots.Info{}, fmt.Errorf("snapshot %q: %w", name, err)
	}
	return snapshots.Info{Name: name, Labels: base.Labels}, nil
}

// parentIDs returns the IDs of parent and its ancestors, nearest first.
func (tx *Tx) parentIDs(parent string) ([]string, error) {
	var ids []string
	for parent != "" {
		_, rec, err := tx.read(parent)
		if err != nil {
			return nil, fmt.Errorf("parent chain: %w", err)
		}
		ids = append(ids, formatID(rec.id))
		parent = rec.info.Parent
	}
	return ids, nil
}

func (tx *Tx) read(key string) (*bolt.Bucket, record, error) {
	b := tx.b.Bucket([]byte(key))
	if b == nil {
		return nil, record{}, fmt.Errorf("snapshot %q: %w", key, errdefs.ErrNotFound)
	}
	rec, err := readRecord(key, b)
	return b, rec, err
}

func addChild(parent *bolt.Bucket, child string) error {
	c, err := parent.CreateBucketIfNotExists(bucketChildren)
	if err != nil {
		return err
	}
	return c.Put([]byte(child), nil)
}

func formatID(id uint64) string { return strconv.FormatUint(id, 10) }

func readID(b *bolt.Bucket) uint64 {
	id, _ := binary.Uvarint(b.Get(keyID))
	return id
}

func readKind(b *bolt.Bucket) snapshots.Kind {
	if v := b.Get(keyKind); len(v) == 1 {
		return snapshots.Kind(v[0])
	}
	return snapshots.KindUnknown
}
