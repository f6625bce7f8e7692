package metadata

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/berth-dev/berth/filters"
	"github.com/berth-dev/berth/labels"
	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/namespaces"
	"github.com/berth-dev/berth/snapshots"
	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
)

var (
	keyName     = []byte("name")
	keyParent   = []byte("parent")
	keyKind     = []byte("kind")
	keyChildren = []byte("children")
)

// WithSnapshotters gives the DB the backend snapshotters by name
// ("overlayfs", "native"); Snapshotter(name) namespaces them.
func WithSnapshotters(sns map[string]snapshots.Snapshotter) Option {
	return func(db *DB) { db.snapshotters = sns }
}

// Snapshotter returns backend snapshotter name seen one namespace at a
// time, or nil if there is none by that name.
func (db *DB) Snapshotter(name string) *SnapshotStore {
	sn, ok := db.snapshotters[name]
	if !ok {
		return nil
	}
	return &SnapshotStore{db: db, name: name, backend: sn}
}

// LookupSnapshotter is Snapshotter as an interface: nil (not a typed nil)
// when there is none by that name, for callers that take a
// func(name) snapshots.Snapshotter.
func (db *DB) LookupSnapshotter(name string) snapshots.Snapshotter {
	if s := db.Snapshotter(name); s != nil {
		return s
	}
	return nil
}

// SnapshotStore is a snapshots.Snapshotter whose keys live in the
// context's namespace: "k" in namespace "a" and "k" in "b" are different
// snapshots. In the backend a snapshot is named "<ns>/<seq>/<key>".
//
// Snapshots made outside any lease that are active or views stay until
// removed; those made under a lease live as long as the lease. Committed
// snapshots are kept by what refers to them (images' gc.ref.snapshot
// labels, leases, children, gc.root labels) and collected otherwise.
type SnapshotStore struct {
	db      *DB
	name    string
	backend snapshots.Snapshotter
}

var _ snapshots.Snapshotter = (*SnapshotStore)(nil)

// snapshotRecord is a namespace's view of one snapshot.
type snapshotRecord struct {
	key, backendKey, parent string
	kind                    snapshots.Kind
	labels                  map[string]string
	created, updated        time.Time
}

func (s *SnapshotStore) bucketPath(ns string) [][]byte {
	return [][]byte{[]byte(ns), bucketKeySnapshots, []byte(s.name)}
}

func (s *SnapshotStore) get(tx *bolt.Tx, ns, key string) (*snapshotRecord, error) {
	b := bucket(tx, append(s.bucketPath(ns), []byte(key))...)
	if b == nil {
		return nil, s.db.notFoundElsewhere(tx, ns, "snapshot", key, append(s.bucketPath(ns)[1:], []byte(key))...)
	}
	return readSnapshot(key, b), nil
}

func readSnapshot(key string, b *bolt.Bucket) *snapshotRecord {
	return &snapshotRecord{
		key:        key,
		backendKey: string(b.Get(keyName)),
		parent:     string(b.Get(keyParent)),
		kind:       snapshots.ParseKind(string(b.Get(keyKind))),
		labels:     readMap(b, bucketKeyLabels),
		created:    readTimestamp(b, keyCreatedAt),
		updated:    readTimestamp(b, keyUpdatedAt),
	}
}

func (r *snapshotRecord) info() snapshots.Info {
	return snapshots.Info{Kind: r.kind, Name: r.key, Parent: r.parent, Labels: r.labels, Created: r.created, Updated: r.updated}
}

func (s *SnapshotStore) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return snapshots.Info{}, err
	}
	var info snapshots.Info
	err = s.db.view(func(tx *bolt.Tx) error {
		r, err := s.get(tx, ns, key)
		if err == nil {
			info = r.info()
		}
		return err
	})
	return info, err
}

func (s *SnapshotStore) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return snapshots.Info{}, err
	}
	if err := labels.ValidateAll(info.Labels); err != nil {
		return snapshots.Info{}, fmt.Errorf("snapshot %q in namespace %q: %w", info.Name, ns, err)
	}
	if len(fieldpaths) == 0 {
		fieldpaths = []string{"labels"}
	}
	for _, p := range fieldpaths {
		if p != "labels" && !strings.HasPrefix(p, "labels.") {
			return snapshots.Info{}, fmt.Errorf("snapshot %q in namespace %q: cannot update field %q, only labels: %w", info.Name, ns, p, errdefs.ErrInvalidArgument)
		}
	}
	var out snapshots.Info
	err = s.db.update(func(tx *bolt.Tx) error {
		r, err := s.get(tx, ns, info.Name)
		if err != nil {
			return err
		}
		r.labels, _, _ = applyMapPaths("labels", r.labels, info.Labels, fieldpaths)
		r.updated = time.Now().UTC()
		b := bucket(tx, append(s.bucketPath(ns), []byte(info.Name))...)
		if err := writeTimestamps(b, time.Time{}, r.updated); err != nil {
			return err
		}
		out = r.info()
		return writeMap(b, bucketKeyLabels, r.labels)
	})
	return out, err
}

// Usage and Mounts wrap the backend's errors, which name the backend's
// key ("<ns>/<seq>/<key>"), with the key and the namespace; the states
// the record knows are checked here first.
func (s *SnapshotStore) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	ns, r, err := s.record(ctx, key)
	if err != nil {
		return snapshots.Usage{}, err
	}
	u, err := s.backend.Usage(ctx, r.backendKey)
	if err != nil {
		return snapshots.Usage{}, fmt.Errorf("usage of snapshot %q in namespace %q: %w", key, ns, err)
	}
	return u, nil
}

func (s *SnapshotStore) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	ns, r, err := s.record(ctx, key)
	if err != nil {
		return nil, err
	}
	if r.kind == snapshots.KindCommitted {
		return nil, fmt.Errorf("snapshot %q in namespace %q is committed: only active snapshots and views have mounts: %w", key, ns, errdefs.ErrFailedPrecondition)
	}
	m, err := s.backend.Mounts(ctx, r.backendKey)
	if err != nil {
		return nil, fmt.Errorf("mounts of snapshot %q in namespace %q: %w", key, ns, err)
	}
	return m, nil
}

// record reads snapshot key of the context's namespace.
func (s *SnapshotStore) record(ctx context.Context, key string) (string, *snapshotRecord, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return "", nil, err
	}
	var r *snapshotRecord
	err = s.db.view(func(tx *bolt.Tx) error {
		r, err = s.get(tx, ns, key)
		return err
	})
	return ns, r, err
}

func (s *SnapshotStore) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindActive, key, parent, opts)
}

func (s *SnapshotStore) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindView, key, parent, opts)
}

func (s *SnapshotStore) Walk(ctx context.Context, fn snapshots.WalkFunc, fs ...string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	filter, err := filters.Parse(fs...)
	if err != nil {
		return err
	}
	var infos []snapshots.Info
	err = s.db.view(func(tx *bolt.Tx) error {
		b := bucket(tx, s.bucketPath(ns)...)
		if b == nil {
			return nil
		}
		return b.ForEachBucket(func(k []byte) error {
			info := readSnapshot(string(k), b.Bucket(k)).info()
			if filter.Match(snapshotAdaptor(info)) {
				infos = append(infos, info)
			}
			return nil
		})
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

// Close does nothing: the backend belongs to its plugin.
func (s *SnapshotStore) Close() error { return nil }

func snapshotAdaptor(info snapshots.Info) filters.Adaptor {
	return filters.AdaptorFunc(func(fp []string) (string, bool) {
		if len(fp) == 0 {
			return "", false
		}
		// As containerd's: kind in lower case, parent present even when
		// empty, so that the filters mean the same as on a backend.
		switch fp[0] {
		case "kind":
			return strings.ToLower(info.Kind.String()), info.Kind != snapshots.KindUnknown
		case "name":
			return info.Name, true
		case "parent":
			return info.Parent, true
		case "labels":
			return mapField(info.Labels, fp[1:])
		}
		return "", false
	})
}

// Cleanup passes to the backend when it can reclaim orphaned storage.
func (s *SnapshotStore) Cleanup(ctx context.Context) error {
	c, ok := s.backend.(snapshots.Cleaner)
	if !ok {
		return fmt.Errorf("snapshotter %q cannot clean up: %w", s.name, errdefs.ErrNotImplemented)
	}
	return c.Cleanup(ctx)
}
