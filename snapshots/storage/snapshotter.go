package storage

import (
	"context"

	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/snapshots"
)

// Layout is what sets one directory-based snapshotter apart from another:
// how a new snapshot's directory is filled, how a snapshot is mounted, and
// how its disk use is measured. Everything else — records, parent chains,
// crash-safe directories — is the Snapshotter's.
type Layout interface {
	// Populate fills dir, the new snapshot s's directory.
	Populate(ctx context.Context, dir string, s Snapshot) error
	// Mounts returns the mounts of active snapshot or view s.
	Mounts(s Snapshot) []mount.Mount
	// Measure returns the disk used by snapshot id.
	Measure(ctx context.Context, id string) (snapshots.Usage, error)
}

// Snapshotter is a snapshots.Snapshotter over a MetaStore and Dirs; the
// overlay and native snapshotters are this with their own Layout.
type Snapshotter struct {
	ms     *MetaStore
	dirs   *Dirs
	layout Layout
}

var (
	_ snapshots.Snapshotter = (*Snapshotter)(nil)
	_ snapshots.Cleaner     = (*Snapshotter)(nil)
)

// NewSnapshotter returns the snapshotter of ms and dirs laid out by layout.
func NewSnapshotter(ms *MetaStore, dirs *Dirs, layout Layout) *Snapshotter {
	return &Snapshotter{ms: ms, dirs: dirs, layout: layout}
}

// Stat implements snapshots.Snapshotter.
func (s *Snapshotter) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	return s.ms.Stat(ctx, key)
}

// Update implements snapshots.Snapshotter.
func (s *Snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	return s.ms.UpdateInfo(ctx, info, fieldpaths...)
}

// Usage implements snapshots.Snapshotter with the layout's measure.
func (s *Snapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	return s.ms.Usage(ctx, key, s.layout.Measure)
}

// Mounts implements snapshots.Snapshotter.
func (s *Snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	var snap Snapshot
	err := s.ms.View(ctx, func(tx *Tx) error {
		var err error
		snap, err = tx.GetSnapshot(key)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.layout.Mounts(snap), nil
}

// Prepare implements snapshots.Snapshotter.
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindActive, key, parent, opts)
}

// View implements snapshots.Snapshotter.
func (s *Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindView, key, parent, opts)
}

// Commit implements snapshots.Snapshotter; usage is measured then.
func (s *Snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	return s.ms.Commit(ctx, name, key, s.layout.Measure, opts...)
}

// Remove implements snapshots.Snapshotter; the snapshot's directory goes
// with it, out of the root at once and off the disk right after.
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	return s.dirs.Remove(ctx, key)
}

// Walk implements snapshots.Snapshotter.
func (s *Snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	return s.ms.Walk(ctx, fn, filters...)
}

// Cleanup implements snapshots.Cleaner: it removes directories no
// snapshot owns.
func (s *Snapshotter) Cleanup(ctx context.Context) error {
	return s.dirs.Cleanup(ctx)
}

// Close implements snapshots.Snapshotter, once the directories of removed
// snapshots are deleted.
func (s *Snapshotter) Close() error {
	s.dirs.close()
	return s.ms.Close()
}

func (s *Snapshotter) create(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) ([]mount.Mount, error) {
	snap, err := s.dirs.Create(ctx, kind, key, parent, s.layout.Populate, opts...)
	if err != nil {
		return nil, err
	}
	return s.layout.Mounts(snap), nil
}
