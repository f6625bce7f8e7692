package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/snapshots"
	"github.com/containerd/errdefs"
)

// tempPrefix names directories being populated; Cleanup removes them with
// every other directory no snapshot owns.
const tempPrefix = "new-"

// trashName is the directory beside the root that Remove moves a removed
// snapshot's directory into, to delete it after returning; Cleanup
// empties it.
const trashName = "trash"

// deleteDelay is how long a removed snapshot's directory waits in the
// trash. A deletion's unlinks join the file system's journal, which every
// sync running meanwhile has to commit: deleting at once slows down the
// calls that follow a removal (the container's removal and the like,
// each a database sync) by more than the deletion itself takes.
const deleteDelay = 100 * time.Millisecond

// Dirs keeps one directory per snapshot ID under a root directory, in step
// with a MetaStore:
//
//   - Create populates a temporary directory, renames it to the snapshot's
//     ID and only then commits the transaction that records the snapshot.
//     A crash before the commit leaves a directory no record names.
//   - Remove commits the removal of the record, then moves the directory
//     out of the root into the trash, and deletes it there in the
//     background, deleteDelay later. A crash in between leaves a
//     directory no record names, or a directory in the trash.
//   - Cleanup removes every directory no record names, and the trash.
//
// So a snapshot in the MetaStore always has its directory, complete, and
// the root holds the directories of the recorded snapshots only, but for
// a crash's leftovers.
type Dirs struct {
	ms    *MetaStore
	root  string
	trash string
	// deleting counts the background deletions in the trash; closing
	// ends their wait.
	deleting  sync.WaitGroup
	closing   chan struct{}
	closeOnce sync.Once
	// mu orders Create, Remove and Cleanup, so that Cleanup never takes a
	// directory whose record is not committed yet, and a Create whose
	// commit failed removes its directory before the next Create is handed
	// the same ID.
	mu sync.Mutex
}

// NewDirs keeps the directories of ms's snapshots under root, which it
// creates if needed, and removed ones in the trash beside root.
func NewDirs(ms *MetaStore, root string) (*Dirs, error) {
	d := &Dirs{ms: ms, root: root, trash: filepath.Join(filepath.Dir(root), trashName), closing: make(chan struct{})}
	for _, dir := range []string{d.root, d.trash} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Path returns the directory of the snapshot with ID id.
func (d *Dirs) Path(id string) string { return filepath.Join(d.root, id) }

// PopulateFunc fills the directory of new snapshot s, a fresh empty
// directory (mode 0700) that becomes Path(s.ID) when it returns nil. It
// runs inside the write transaction that records s, so a long one (a copy)
// holds up the other writers, and should give up when ctx is done.
type PopulateFunc func(ctx context.Context, dir string, s Snapshot) error

// Create records active snapshot or view key over parent and makes its
// directory with populate, all or nothing.
func (d *Dirs) Create(ctx context.Context, kind snapshots.Kind, key, parent string, populate PopulateFunc, opts ...snapshots.Opt) (Snapshot, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var (
		s      Snapshot
		placed string
	)
	err := d.ms.Update(ctx, func(tx *Tx) error {
		var err error
		if s, err = tx.CreateSnapshot(kind, key, parent, opts...); err != nil {
			return err
		}
		placed, err = d.build(ctx, s, populate)
		if err != nil {
			return fmt.Errorf("snapshot %q: %w", key, err)
		}
		return nil
	})
	if err != nil {
		if placed != "" {
			// The rename happened but the record was not committed.
			_ = os.RemoveAll(placed)
		}
		return Snapshot{}, err
	}
	return s, nil
}

// build populates a temporary directory and renames it to Path(s.ID). It
// returns the path once the rename happened, even with an error.
func (d *Dirs) build(ctx context.Context, s Snapshot, populate PopulateFunc) (string, error) {
	tmp, err := os.MkdirTemp(d.root, tempPrefix)
	if err != nil {
		return "", err
	}
	if err := populate(ctx, tmp, s); err != nil {
		return "", errors.Join(err, os.RemoveAll(tmp))
	}
	path := d.Path(s.ID)
	// s.ID is not committed yet, so a directory in its place was left by
	// a transaction that crashed or failed with the same ID: garbage.
	if _, err := os.Lstat(path); err == nil {
		if err := removeDir(path); err != nil {
			return "", errors.Join(err, os.RemoveAll(tmp))
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", errors.Join(err, os.RemoveAll(tmp))
	}
	// The rename must be on disk before the record that names it.
	return path, syncDir(d.root)
}

// Remove deletes snapshot key's record, then its directory: it is moved
// into the trash at once and deleted there after Remove returns. A
// directory with something mounted below it is refused, so that removing
// it never removes mounted files.
func (d *Dirs) Remove(ctx context.Context, key string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var path string
	err := d.ms.Update(ctx, func(tx *Tx) error {
		id, _, err := tx.Remove(key)
		if err != nil {
			return err
		}
		path = d.Path(id)
		points, err := mount.MountPointsUnder(path)
		if err != nil {
			return fmt.Errorf("cannot remove %q: %w", key, err)
		}
		if len(points) > 0 {
			return fmt.Errorf("cannot remove %q: %s is mounted: %w", key, points[0], errdefs.ErrFailedPrecondition)
		}
		return nil
	})
	if err != nil {
		return err
	}
	trashed := filepath.Join(d.trash, filepath.Base(path))
	if err := os.Rename(path, trashed); err != nil {
		// A root on a file system of its own, say: delete it here.
		trashed = path
	}
	d.deleting.Add(1)
	go func() {
		defer d.deleting.Done()
		select {
		case <-time.After(deleteDelay):
		case <-d.closing:
		}
		if err := removeDir(trashed); err != nil {
			// The snapshot is gone; the next Cleanup removes the rest.
			log.G(ctx).Warn("snapshot directory not removed", "key", key, "path", trashed, "error", err)
		}
	}()
	return nil
}

// wait waits for the deletions Remove left running.
func (d *Dirs) wait() { d.deleting.Wait() }

// close runs the pending deletions now and waits for them.
func (d *Dirs) close() {
	d.closeOnce.Do(func() { close(d.closing) })
	d.wait()
}

// Cleanup removes every entry under the root that is not the directory of
// a recorded snapshot: temporary directories of interrupted Creates and
// directories whose record was never committed or already removed; and
// it empties the trash.
func (d *Dirs) Cleanup(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.wait()
	errs := []error{d.emptyTrash()}
	var ids map[string]string
	err := d.ms.View(ctx, func(tx *Tx) error {
		var err error
		ids, err = tx.IDMap()
		return err
	})
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(d.root)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, ok := ids[e.Name()]; ok && e.IsDir() {
			continue
		}
		if err := removeDir(filepath.Join(d.root, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// emptyTrash removes what the trash holds: directories whose background
// deletion a crash interrupted.
func (d *Dirs) emptyTrash() error {
	entries, err := os.ReadDir(d.trash)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, removeDir(filepath.Join(d.trash, e.Name())))
	}
	return errors.Join(errs...)
}

// removeDir removes path, unmounting first whatever a crash left mounted
// below it.
func removeDir(path string) error {
	if err := mount.UnmountAll(path, 0); err != nil {
		return err
	}
	return os.RemoveAll(path)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
