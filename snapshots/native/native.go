// Package native is the copying snapshotter: every snapshot is a complete
// tree, root/snapshots/<id>, copied from its parent when it is prepared,
// and mounted with a bind mount. It works on any filesystem, overlay
// included, at the price of a full copy per snapshot, and is the fallback
// where overlayfs cannot stack. Records are in root/metadata.db
// (snapshots/storage).
//
// Prepare and View both copy: a view is a private copy mounted read-only,
// so that it does not depend on its parent staying in place.
package native

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/snapshots"
	"github.com/berth-dev/berth/snapshots/storage"
)

// Snapshotter is the copying snapshots.Snapshotter.
type Snapshotter struct {
	ms   *storage.MetaStore
	dirs *storage.Dirs
}

var (
	_ snapshots.Snapshotter = (*Snapshotter)(nil)
	_ snapshots.Cleaner     = (*Snapshotter)(nil)
)

// Opt configures a Snapshotter; there are none yet.
type Opt func(*Snapshotter) error

// NewSnapshotter opens the snapshotter stored under root, creating it if
// needed, and removes what an earlier process left half done: directories
// of snapshots it did not record.
func NewSnapshotter(root string, opts ...Opt) (*Snapshotter, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	ms, err := storage.NewMetaStore(filepath.Join(root, "metadata.db"))
	if err != nil {
		return nil, err
	}
	n := &Snapshotter{ms: ms}
	if err := n.open(root, opts); err != nil {
		ms.Close()
		return nil, err
	}
	return n, nil
}

func (n *Snapshotter) open(root string, opts []Opt) error {
	for _, opt := range opts {
		if err := opt(n); err != nil {
			return err
		}
	}
	dirs, err := storage.NewDirs(n.ms, filepath.Join(root, "snapshots"))
	if err != nil {
		return err
	}
	if err := dirs.Cleanup(context.Background()); err != nil {
		return fmt.Errorf("clean up %s: %w", root, err)
	}
	n.dirs = dirs
	return nil
}

// Stat implements snapshots.Snapshotter.
func (n *Snapshotter) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	return n.ms.Stat(ctx, key)
}

// Update implements snapshots.Snapshotter.
func (n *Snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	return n.ms.UpdateInfo(ctx, info, fieldpaths...)
}

// Usage implements snapshots.Snapshotter. A copy holds its parent's files
// too, so an active snapshot's usage includes them: it is the disk the
// snapshot really takes.
func (n *Snapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	return n.ms.Usage(ctx, key, n.measure)
}

// Mounts implements snapshots.Snapshotter.
func (n *Snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	var s storage.Snapshot
	err := n.ms.View(ctx, func(tx *storage.Tx) error {
		var err error
		s, err = tx.GetSnapshot(key)
		return err
	})
	if err != nil {
		return nil, err
	}
	return n.mounts(s), nil
}

// Prepare implements snapshots.Snapshotter: it copies parent.
func (n *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return n.create(ctx, snapshots.KindActive, key, parent, opts)
}

// View implements snapshots.Snapshotter: it copies parent.
func (n *Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return n.create(ctx, snapshots.KindView, key, parent, opts)
}

// Commit implements snapshots.Snapshotter.
func (n *Snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	return n.ms.Commit(ctx, name, key, n.measure, opts...)
}

// Remove implements snapshots.Snapshotter; the snapshot's directory goes
// with it.
func (n *Snapshotter) Remove(ctx context.Context, key string) error {
	return n.dirs.Remove(ctx, key)
}

// Walk implements snapshots.Snapshotter.
func (n *Snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	return n.ms.Walk(ctx, fn, filters...)
}

// Cleanup implements snapshots.Cleaner: it removes directories no
// snapshot owns.
func (n *Snapshotter) Cleanup(ctx context.Context) error {
	return n.dirs.Cleanup(ctx)
}

// Close implements snapshots.Snapshotter.
func (n *Snapshotter) Close() error {
	return n.ms.Close()
}

func (n *Snapshotter) create(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) ([]mount.Mount, error) {
	s, err := n.dirs.Create(ctx, kind, key, parent, n.populate, opts...)
	if err != nil {
		return nil, err
	}
	return n.mounts(s), nil
}

// populate copies the nearest parent, itself a complete tree, into the new
// snapshot's directory; without a parent the tree is empty.
func (n *Snapshotter) populate(ctx context.Context, dir string, s storage.Snapshot) error {
	if len(s.ParentIDs) == 0 {
		return os.Chmod(dir, 0o755)
	}
	return copyTree(ctx, dir, n.dirs.Path(s.ParentIDs[0]))
}

func (n *Snapshotter) mounts(s storage.Snapshot) []mount.Mount {
	rw := "rw"
	if s.Kind == snapshots.KindView {
		rw = "ro"
	}
	return []mount.Mount{{Type: "bind", Source: n.dirs.Path(s.ID), Options: []string{rw, "rbind"}}}
}

func (n *Snapshotter) measure(ctx context.Context, id string) (snapshots.Usage, error) {
	return storage.DiskUsage(ctx, n.dirs.Path(id))
}
