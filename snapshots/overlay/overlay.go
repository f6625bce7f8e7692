// Package overlay is the overlayfs snapshotter, berth's default.
//
// Each snapshot owns root/snapshots/<id>/, holding fs/, its own layer, and,
// for an active snapshot, work/, overlayfs's scratch directory. An active
// snapshot's fs is the overlay's upperdir and collects its changes
// (deletions as overlay whiteouts); once committed, fs is a lowerdir of
// every descendant. Records are in root/metadata.db (snapshots/storage).
//
// Mounts:
//
//	active, no parent      bind fs, rw
//	active over parents    overlay upperdir=fs, workdir=work, lowerdir=parents' fs, nearest first
//	view, no parent        bind fs, ro (an empty tree)
//	view over one parent   bind the parent's fs, ro
//	view over several      overlay lowerdir only, which is read-only
//
// Overlay mounts carry index=off when the kernel has the option, so that a
// committed layer can be the lower of many overlays at once, and userxattr
// inside a user namespace, where trusted.* attributes are out of reach.
// Both are probed when the snapshotter starts, with a test mount.
package overlay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/snapshots"
	"github.com/berth-dev/berth/snapshots/storage"
)

// Snapshotter is the overlayfs snapshots.Snapshotter.
type Snapshotter struct {
	ms   *storage.MetaStore
	dirs *storage.Dirs
	// options end every overlay mount: the probed ones, then the user's.
	options []string
}

var (
	_ snapshots.Snapshotter = (*Snapshotter)(nil)
	_ snapshots.Cleaner     = (*Snapshotter)(nil)
)

type config struct {
	mountOptions []string
}

// Opt configures a Snapshotter.
type Opt func(*config) error

// WithMountOptions adds options to every overlay mount, after the ones the
// snapshotter chose ("volatile", for instance). Default: none.
func WithMountOptions(options ...string) Opt {
	return func(c *config) error {
		c.mountOptions = append(c.mountOptions, options...)
		return nil
	}
}

// NewSnapshotter opens the snapshotter stored under root, creating it if
// needed. It fails with errdefs.ErrNotImplemented when overlayfs cannot
// be mounted from root's filesystem, and removes what an earlier process
// left half done: directories of snapshots it did not record.
func NewSnapshotter(root string, opts ...Opt) (*Snapshotter, error) {
	var c config
	for _, opt := range opts {
		if err := opt(&c); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	// The metadata file's lock makes this process the root's only user,
	// which the probe directory and the cleanup rely on.
	ms, err := storage.NewMetaStore(filepath.Join(root, "metadata.db"))
	if err != nil {
		return nil, err
	}
	s, err := open(ms, root, c)
	if err != nil {
		ms.Close()
		return nil, err
	}
	return s, nil
}

func open(ms *storage.MetaStore, root string, c config) (*Snapshotter, error) {
	options, err := probe(root)
	if err != nil {
		return nil, err
	}
	dirs, err := storage.NewDirs(ms, filepath.Join(root, "snapshots"))
	if err != nil {
		return nil, err
	}
	if err := dirs.Cleanup(context.Background()); err != nil {
		return nil, fmt.Errorf("clean up %s: %w", root, err)
	}
	return &Snapshotter{ms: ms, dirs: dirs, options: append(options, c.mountOptions...)}, nil
}

// Stat implements snapshots.Snapshotter.
func (o *Snapshotter) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	return o.ms.Stat(ctx, key)
}

// Update implements snapshots.Snapshotter.
func (o *Snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	return o.ms.UpdateInfo(ctx, info, fieldpaths...)
}

// Usage implements snapshots.Snapshotter: an active snapshot's is its fs
// directory's, measured now.
func (o *Snapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	return o.ms.Usage(ctx, key, o.measure)
}

// Mounts implements snapshots.Snapshotter.
func (o *Snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	var s storage.Snapshot
	err := o.ms.View(ctx, func(tx *storage.Tx) error {
		var err error
		s, err = tx.GetSnapshot(key)
		return err
	})
	if err != nil {
		return nil, err
	}
	return o.mounts(s), nil
}

// Prepare implements snapshots.Snapshotter.
func (o *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return o.create(ctx, snapshots.KindActive, key, parent, opts)
}

// View implements snapshots.Snapshotter.
func (o *Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return o.create(ctx, snapshots.KindView, key, parent, opts)
}

// Commit implements snapshots.Snapshotter; the usage recorded is that of
// the fs directory.
func (o *Snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	return o.ms.Commit(ctx, name, key, o.measure, opts...)
}

// Remove implements snapshots.Snapshotter; the snapshot's directory goes
// with it.
func (o *Snapshotter) Remove(ctx context.Context, key string) error {
	return o.dirs.Remove(ctx, key)
}

// Walk implements snapshots.Snapshotter.
func (o *Snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	return o.ms.Walk(ctx, fn, filters...)
}

// Cleanup implements snapshots.Cleaner: it removes directories no
// snapshot owns.
func (o *Snapshotter) Cleanup(ctx context.Context) error {
	return o.dirs.Cleanup(ctx)
}

// Close implements snapshots.Snapshotter.
func (o *Snapshotter) Close() error {
	return o.ms.Close()
}

func (o *Snapshotter) create(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) ([]mount.Mount, error) {
	s, err := o.dirs.Create(ctx, kind, key, parent, o.populate, opts...)
	if err != nil {
		return nil, err
	}
	return o.mounts(s), nil
}

// populate lays out a new snapshot's directory. Overlay shows the upper
// directory's owner and mode at the root of the merged tree, so fs takes
// the parent's.
func (o *Snapshotter) populate(_ context.Context, dir string, s storage.Snapshot) error {
	fs := filepath.Join(dir, "fs")
	if err := os.Mkdir(fs, 0o755); err != nil {
		return err
	}
	mode, uid, gid := os.FileMode(0o755), os.Getuid(), os.Getgid()
	if len(s.ParentIDs) > 0 {
		var err error
		if mode, uid, gid, err = rootAttrs(o.upper(s.ParentIDs[0])); err != nil {
			return err
		}
	}
	if err := os.Lchown(fs, uid, gid); err != nil {
		return err
	}
	// Explicitly, as Mkdir's mode is subject to the umask.
	if err := os.Chmod(fs, mode); err != nil {
		return err
	}
	if s.Kind == snapshots.KindActive {
		return os.Mkdir(filepath.Join(dir, "work"), 0o711)
	}
	return nil
}

func (o *Snapshotter) mounts(s storage.Snapshot) []mount.Mount {
	switch {
	case len(s.ParentIDs) == 0:
		rw := "rw"
		if s.Kind == snapshots.KindView {
			rw = "ro"
		}
		return []mount.Mount{{Type: "bind", Source: o.upper(s.ID), Options: []string{rw, "rbind"}}}
	case s.Kind == snapshots.KindView && len(s.ParentIDs) == 1:
		return []mount.Mount{{Type: "bind", Source: o.upper(s.ParentIDs[0]), Options: []string{"ro", "rbind"}}}
	}
	var options []string
	if s.Kind == snapshots.KindActive {
		options = append(options, "workdir="+o.work(s.ID), "upperdir="+o.upper(s.ID))
	}
	lowers := make([]string, len(s.ParentIDs))
	for i, id := range s.ParentIDs {
		lowers[i] = o.upper(id)
	}
	options = append(options, "lowerdir="+strings.Join(lowers, ":"))
	options = append(options, o.options...)
	return []mount.Mount{{Type: "overlay", Source: "overlay", Options: options}}
}

func (o *Snapshotter) measure(ctx context.Context, id string) (snapshots.Usage, error) {
	return storage.DiskUsage(ctx, o.upper(id))
}

func (o *Snapshotter) upper(id string) string { return filepath.Join(o.dirs.Path(id), "fs") }

func (o *Snapshotter) work(id string) string { return filepath.Join(o.dirs.Path(id), "work") }
