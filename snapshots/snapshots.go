// Package snapshots defines berth's snapshotters: stores of filesystem
// trees built as chains of layers, each layer the changes over its parent,
// handed out as mounts. The semantics are containerd's, so that the
// snapshots gRPC service, ctr and proxy snapshotters see no difference.
//
// Implementations: snapshots/overlay (overlayfs, one upper directory per
// layer) and snapshots/native (a full copy per snapshot, for filesystems
// overlay cannot stack on). Both keep their bookkeeping in
// snapshots/storage and pass the shared suite in snapshots/testsuite.
package snapshots

import (
	"context"
	"encoding/json"
	"maps"
	"strings"
	"time"

	"github.com/berth-dev/berth/mount"
)

// Kind is the state of a snapshot; see Snapshotter for the transitions.
type Kind uint8

// The kinds of snapshot.
const (
	KindUnknown Kind = iota
	KindView
	KindActive
	KindCommitted
)

// ParseKind parses "view", "active" or "committed" in any case; anything
// else is KindUnknown.
func ParseKind(s string) Kind {
	switch strings.ToLower(s) {
	case "view":
		return KindView
	case "active":
		return KindActive
	case "committed":
		return KindCommitted
	}
	return KindUnknown
}

// String returns "View", "Active", "Committed" or "Unknown", the spelling
// containerd's API and ctr print.
func (k Kind) String() string {
	switch k {
	case KindView:
		return "View"
	case KindActive:
		return "Active"
	case KindCommitted:
		return "Committed"
	}
	return "Unknown"
}

// MarshalJSON encodes k as its String.
func (k Kind) MarshalJSON() ([]byte, error) { return json.Marshal(k.String()) }

// UnmarshalJSON decodes a string with ParseKind.
func (k *Kind) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*k = ParseKind(s)
	return nil
}

// Info describes a snapshot.
type Info struct {
	Kind Kind
	// Name is the key of an active snapshot or view, the name of a
	// committed one: they share one namespace.
	Name string
	// Parent is the name of the committed snapshot this one descends from,
	// "" for none.
	Parent string `json:",omitempty"`
	// Labels are the only mutable field (Update).
	Labels  map[string]string `json:",omitempty"`
	Created time.Time
	Updated time.Time
}

// Usage is the disk a snapshot takes beyond what it shares with its
// parents.
type Usage struct {
	Inodes int64
	Size   int64 // bytes allocated
}

// Add adds other to u. Inodes shared between the two are counted twice, so
// the sum is an upper bound.
func (u *Usage) Add(other Usage) {
	u.Size += other.Size
	u.Inodes += other.Inodes
}

// WalkFunc is called by Snapshotter.Walk for each matching snapshot.
type WalkFunc func(context.Context, Info) error

// Snapshotter stores snapshots and hands them out as mounts.
//
// A snapshot is active, a view or committed. Keys of active snapshots and
// views and names of committed snapshots share one namespace.
//
//	(none) ── Prepare(key, parent) ──► Active ── Commit(name, key) ──► Committed
//	(none) ── View(key, parent) ─────► View
//	Active or View ── Remove(key) ──► (none)
//	Committed ── Remove(name), once no snapshot descends from it ──► (none)
//
// Who calls what:
//
//   - The unpacker, for each image layer: Prepare(tmpkey, chainID of the
//     layers below), mount, apply the layer, unmount, Commit(chainID,
//     tmpkey). The committed snapshot never changes again and is the
//     parent of the next layer's Prepare.
//   - The container runtime: Prepare(container ID, image chainID) for a
//     writable root filesystem, or View for a read-only one, then Mounts
//     whenever it needs the mounts again, after a restart for instance. A
//     container's snapshot is usually removed, sometimes committed into a
//     new image layer.
//   - The garbage collector: Walk and Remove, children before parents.
//   - The snapshots API and the CLI: Stat, Usage, Update (labels only),
//     Walk.
//
// Prepare and View take a committed parent, "" for an empty tree. Mounts
// exist only for active snapshots and views; whoever mounts them unmounts
// them before Commit or Remove.
//
// Errors are errdefs classes and name the key: ErrNotFound for a missing
// key or parent, ErrAlreadyExists when a key or name is taken,
// ErrInvalidArgument for a parent that is not committed,
// ErrFailedPrecondition for a Commit of a view or committed snapshot, for
// Mounts of a committed snapshot and for a Remove of a parent.
type Snapshotter interface {
	// Stat returns the info of snapshot key, of any kind.
	Stat(ctx context.Context, key string) (Info, error)
	// Update changes the labels of snapshot info.Name: fieldpaths
	// "labels" (all of them) or "labels.KEY" (one; an absent or empty
	// value deletes it); with none, all labels are replaced.
	Update(ctx context.Context, info Info, fieldpaths ...string) (Info, error)
	// Usage returns the disk used by snapshot key beyond what it shares
	// with its parents: its own layer for overlay, its whole tree for a
	// copying snapshotter. For an active snapshot it is measured now, in
	// time proportional to its size; for a committed one it was measured
	// at Commit; a view's is zero.
	Usage(ctx context.Context, key string) (Usage, error)
	// Mounts returns again the mounts of active snapshot or view key.
	Mounts(ctx context.Context, key string) ([]mount.Mount, error)
	// Prepare creates active snapshot key over committed parent (""
	// for none) and returns its writable mounts.
	Prepare(ctx context.Context, key, parent string, opts ...Opt) ([]mount.Mount, error)
	// View creates view key over committed parent and returns read-only
	// mounts.
	View(ctx context.Context, key, parent string, opts ...Opt) ([]mount.Mount, error)
	// Commit turns active snapshot key into committed snapshot name.
	// The committed snapshot gets the labels of opts, not those of key.
	Commit(ctx context.Context, name, key string, opts ...Opt) error
	// Remove deletes snapshot key, which may not be a parent.
	Remove(ctx context.Context, key string) error
	// Walk calls fn for each snapshot matching any of filters (containerd
	// filter syntax over kind (active, view, committed), name, parent and
	// labels.KEY). fn may call the Snapshotter.
	Walk(ctx context.Context, fn WalkFunc, filters ...string) error
	// Close releases the Snapshotter; further calls fail. Closing twice
	// is not an error.
	Close() error
}

// Cleaner is implemented by snapshotters that can reclaim storage no
// snapshot owns any more: what a crash or a failed removal left behind.
type Cleaner interface {
	Cleanup(ctx context.Context) error
}

// Opt sets properties of a snapshot on Prepare, View or Commit.
type Opt func(info *Info) error

// WithLabels adds labels to the snapshot; several WithLabels merge.
func WithLabels(labels map[string]string) Opt {
	return func(info *Info) error {
		if info.Labels == nil {
			info.Labels = make(map[string]string, len(labels))
		}
		maps.Copy(info.Labels, labels)
		return nil
	}
}
