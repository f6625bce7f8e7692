// Package metadata is berth's bbolt database: the namespaced references of
// every object (namespaces, images, content references and ingests, leases;
// later containers, snapshots and sandboxes) over a content store shared by
// all namespaces.
//
// Schema, one bucket per level:
//
//	v1/
//	  <namespace>/
//	    labels/                 KEY -> VALUE
//	    images/<name>/          createdat, updatedat, labels/, target/{mediatype,digest,size,annotations/}
//	    content/blob/<digest>/  createdat, updatedat, size, labels/
//	    content/ingests/<ref>/  ref (the backend ingest), expected, total
//	    leases/<id>/            createdat, labels/, content/<digest>, ingests/<ref>, snapshots/<name>/<key>
//
// New object kinds add a bucket under the namespace; Namespaces.Delete
// refuses to remove a namespace while any of its buckets is non-empty.
//
// Bytes are stored once in the backend content store. A blob is visible in a
// namespace only through that namespace's content/blob reference. Garbage
// collection (GarbageCollect) marks from each namespace's roots and removes
// unreferenced references, then the backend blobs no namespace references.
package metadata

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/berth-dev/berth/content"
	"github.com/berth-dev/berth/events"
	"github.com/berth-dev/berth/snapshots"
	bolt "go.etcd.io/bbolt"
)

// DB is the metadata database. Mutations take the read side of gcLock, the
// sweep takes the write side, so nothing is created while a sweep decides
// what is unreferenced.
type DB struct {
	bolt         *bolt.DB
	backend      content.Store
	publisher    events.Publisher
	snapshotters map[string]snapshots.Snapshotter

	gcLock sync.RWMutex
	// mutated is called after a delete, so a scheduler can plan a collection.
	mutated func()
}

// Option configures a DB.
type Option func(*DB)

// WithPublisher makes the DB publish namespace, image and content events.
func WithPublisher(p events.Publisher) Option {
	return func(db *DB) { db.publisher = p }
}

// Open opens (creating if needed) the database at path over the backend
// content store. It fails after timeout when another process holds the file.
func Open(path string, backend content.Store, opts ...Option) (*DB, error) {
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open metadata database %s: %w", path, err)
	}
	db := &DB{bolt: b, backend: backend, mutated: func() {}}
	for _, o := range opts {
		o(db)
	}
	if err := b.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketKeyVersion)
		return err
	}); err != nil {
		b.Close()
		return nil, fmt.Errorf("initialize metadata database %s: %w", path, err)
	}
	return db, nil
}

// Close closes the database; pending transactions finish first.
func (db *DB) Close() error { return db.bolt.Close() }

// SetMutationCallback registers fn, called after each delete that may leave
// garbage. The GC scheduler uses it.
func (db *DB) SetMutationCallback(fn func()) { db.mutated = fn }

// ContentStore returns the namespaced content store.
func (db *DB) ContentStore() *ContentStore { return &ContentStore{db: db} }

// Namespaces returns the namespace store.
func (db *DB) Namespaces() *NamespaceStore { return &NamespaceStore{db: db} }

// Images returns the image store.
func (db *DB) Images() *ImageStore { return &ImageStore{db: db} }

// Leases returns the lease manager.
func (db *DB) Leases() *LeaseManager { return &LeaseManager{db: db} }

func (db *DB) view(fn func(*bolt.Tx) error) error { return db.bolt.View(fn) }

// update runs fn in a write transaction, excluded from a running sweep.
func (db *DB) update(fn func(*bolt.Tx) error) error {
	db.gcLock.RLock()
	defer db.gcLock.RUnlock()
	return db.bolt.Update(fn)
}

func (db *DB) publish(ctx context.Context, topic string, ev events.Event) {
	if db.publisher == nil {
		return
	}
	// Events are best effort: the change is committed already.
	_ = db.publisher.Publish(ctx, topic, ev)
}
