// Package storage is the bookkeeping berth's directory-based snapshotters
// share: a MetaStore that records each snapshot in a bbolt file, and Dirs,
// one directory per snapshot ID, created and removed in step with the
// MetaStore so that a crash leaves nothing half-visible and nothing behind.
// A removed snapshot's directory leaves the root at once, into the trash
// beside it, and is deleted from there shortly after Remove returns.
//
// Schema of the MetaStore:
//
//	v1/
//	  snapshots/              sequence: the last ID handed out
//	    <key or name>/        id, kind, parent, created, updated, size, inodes
//	      labels/             KEY -> VALUE
//	      children/           <key or name of a child> -> ""
//
// Keys of active snapshots and views and names of committed snapshots are
// one namespace, as in containerd. Commit moves a record from its key to
// its name and keeps its ID, and with it the directory.
//
// An ID comes from the bucket's sequence inside the transaction that
// creates the record, so it is handed out again when that transaction is
// rolled back, and only then. Dirs relies on it: a directory whose ID is
// not in the MetaStore belongs to no snapshot.
package storage

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/berth-dev/berth/snapshots"
	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketV1        = []byte("v1")
	bucketSnapshots = []byte("snapshots")
)

// MetaStore records the snapshots of one snapshotter.
type MetaStore struct {
	db        *bolt.DB
	closeOnce sync.Once
	closeErr  error
}

// NewMetaStore opens, creating if needed, the database at path. It fails
// after two seconds when another process holds the file.
func NewMetaStore(path string) (*MetaStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open snapshot metadata %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		v1, err := tx.CreateBucketIfNotExists(bucketV1)
		if err != nil {
			return err
		}
		_, err = v1.CreateBucketIfNotExists(bucketSnapshots)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialize snapshot metadata %s: %w", path, err)
	}
	return &MetaStore{db: db}, nil
}

// Close closes the database; closing twice is not an error.
func (ms *MetaStore) Close() error {
	ms.closeOnce.Do(func() { ms.closeErr = ms.db.Close() })
	return ms.closeErr
}

// View runs fn in a read-only transaction.
func (ms *MetaStore) View(ctx context.Context, fn func(*Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return ms.db.View(func(tx *bolt.Tx) error {
		return fn(&Tx{b: tx.Bucket(bucketV1).Bucket(bucketSnapshots)})
	})
}

// Update runs fn in a read-write transaction, committed when fn returns
// nil. Update returns once the commit is on disk.
func (ms *MetaStore) Update(ctx context.Context, fn func(*Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return ms.db.Update(func(tx *bolt.Tx) error {
		return fn(&Tx{b: tx.Bucket(bucketV1).Bucket(bucketSnapshots)})
	})
}

// Stat returns the info of snapshot key.
func (ms *MetaStore) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	var info snapshots.Info
	err := ms.View(ctx, func(tx *Tx) error {
		var err error
		_, info, _, err = tx.GetInfo(key)
		return err
	})
	return info, err
}

// UpdateInfo changes the labels of snapshot info.Name; see Tx.UpdateInfo.
func (ms *MetaStore) UpdateInfo(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	var updated snapshots.Info
	err := ms.Update(ctx, func(tx *Tx) error {
		var err error
		updated, err = tx.UpdateInfo(info, fieldpaths...)
		return err
	})
	return updated, err
}

// Walk calls fn for each snapshot matching any of filters. It reads the
// snapshots in one transaction and calls fn after it, so that fn may call
// the snapshotter, writes included.
func (ms *MetaStore) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	var infos []snapshots.Info
	err := ms.View(ctx, func(tx *Tx) error {
		return tx.WalkInfo(ctx, func(_ context.Context, info snapshots.Info) error {
			infos = append(infos, info)
			return nil
		}, filters...)
	})
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := fn(ctx, info); err != nil {
			return err
		}
	}
	return nil
}

// MeasureFunc measures the disk used by the layer of the snapshot with ID
// id, typically with DiskUsage on its directory.
type MeasureFunc func(ctx context.Context, id string) (snapshots.Usage, error)

// Usage returns the usage of snapshot key: measured now when it is active,
// as recorded otherwise (at Commit for a committed snapshot, zero for a
// view).
func (ms *MetaStore) Usage(ctx context.Context, key string, measure MeasureFunc) (snapshots.Usage, error) {
	var (
		id    string
		info  snapshots.Info
		usage snapshots.Usage
	)
	err := ms.View(ctx, func(tx *Tx) error {
		var err error
		id, info, usage, err = tx.GetInfo(key)
		return err
	})
	if err != nil || info.Kind != snapshots.KindActive {
		return usage, err
	}
	usage, err = measure(ctx, id)
	if err != nil {
		return snapshots.Usage{}, fmt.Errorf("snapshot %q: measure usage: %w", key, err)
	}
	return usage, nil
}

// Commit commits active snapshot key as name, recording the usage measure
// reports. The measure runs before the write transaction, so that walking
// a large layer does not hold up every other writer; the transaction then
// checks that key still has the ID that was measured.
func (ms *MetaStore) Commit(ctx context.Context, name, key string, measure MeasureFunc, opts ...snapshots.Opt) error {
	var (
		id   string
		info snapshots.Info
	)
	err := ms.View(ctx, func(tx *Tx) error {
		var err error
		id, info, _, err = tx.GetInfo(key)
		return err
	})
	if err != nil {
		return err
	}
	var usage snapshots.Usage
	if info.Kind == snapshots.KindActive {
		if usage, err = measure(ctx, id); err != nil {
			return fmt.Errorf("snapshot %q: measure usage: %w", key, err)
		}
	}
	return ms.Update(ctx, func(tx *Tx) error {
		if now, _, _, err := tx.GetInfo(key); err == nil && now != id {
			return fmt.Errorf("snapshot %q was replaced during commit: %w", key, errdefs.ErrAborted)
		}
		_, err := tx.CommitActive(key, name, usage, opts...)
		return err
	})
}
