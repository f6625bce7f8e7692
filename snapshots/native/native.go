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

// Snapshotter is the copying snapshots.Snapshotter. A copy holds its
// parent's files too, so an active snapshot's Usage includes them: it is
// the disk the snapshot really takes.
type Snapshotter struct {
	*storage.Snapshotter
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
	n, err := open(ms, root, opts)
	if err != nil {
		ms.Close()
		return nil, err
	}
	return n, nil
}

func open(ms *storage.MetaStore, root string, opts []Opt) (*Snapshotter, error) {
	dirs, err := storage.NewDirs(ms, filepath.Join(root, "snapshots"))
	if err != nil {
		return nil, err
	}
	if err := dirs.Cleanup(context.Background()); err != nil {
		return nil, fmt.Errorf("clean up %s: %w", root, err)
	}
	n := &Snapshotter{storage.NewSnapshotter(ms, dirs, layout{dirs: dirs})}
	for _, opt := range opts {
		if err := opt(n); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// layout is the native storage.Layout: a snapshot's directory is its whole
// tree, bind mounted.
type layout struct {
	dirs *storage.Dirs
}

// Populate copies the nearest parent, itself a complete tree, into the new
// snapshot's directory; without a parent the tree is empty.
func (l layout) Populate(ctx context.Context, dir string, s storage.Snapshot) error {
	if len(s.ParentIDs) == 0 {
		return os.Chmod(dir, 0o755)
	}
	return copyTree(ctx, dir, l.dirs.Path(s.ParentIDs[0]))
}

// Mounts binds the snapshot's tree, read-only for a view.
func (l layout) Mounts(s storage.Snapshot) []mount.Mount {
	rw := "rw"
	if s.Kind == snapshots.KindView {
		rw = "ro"
	}
	return []mount.Mount{{Type: "bind", Source: l.dirs.Path(s.ID), Options: []string{rw, "rbind"}}}
}

// Measure counts the whole tree.
func (l layout) Measure(ctx context.Context, id string) (snapshots.Usage, error) {
	return storage.DiskUsage(ctx, l.dirs.Path(id))
}
