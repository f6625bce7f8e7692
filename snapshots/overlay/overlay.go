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
	*storage.Snapshotter
	ms     *storage.MetaStore
	layout layout
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
	l := layout{dirs: dirs, options: append(options, c.mountOptions...)}
	return &Snapshotter{Snapshotter: storage.NewSnapshotter(ms, dirs, l), ms: ms, layout: l}, nil
}

// layout is the overlay storage.Layout.
type layout struct {
	dirs *storage.Dirs
	// options end every overlay mount: the probed ones, then the user's.
	options []string
}

// populate lays out a new snapshot's directory. Overlay shows the upper
// directory's owner and mode at the root of the merged tree, so fs takes
// the parent's.
func (o layout) Populate(_ context.Context, dir string, s storage.Snapshot) error {
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

func (o layout) Mounts(s storage.Snapshot) []mount.Mount {
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

func (o layout) Measure(ctx context.Context, id string) (snapshots.Usage, error) {
	return storage.DiskUsage(ctx, o.upper(id))
}

func (o layout) upper(id string) string { return filepath.Join(o.dirs.Path(id), "fs") }

func (o layout) work(id string) string { return filepath.Join(o.dirs.Path(id), "work") }
