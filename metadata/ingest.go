package metadata

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/content"
	"github.com/berth-dev/berth/filters"
	"github.com/berth-dev/berth/labels"
	"github.com/berth-dev/berth/leases"
	"github.com/berth-dev/berth/namespaces"
	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

var keyLeased = []byte("leased")

// Status reports ingest ref of the context's namespace.
func (cs *ContentStore) Status(ctx context.Context, ref string) (content.Status, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return content.Status{}, err
	}
	if err := cs.db.view(func(tx *bolt.Tx) error {
		if bucket(tx, []byte(ns), bucketKeyContent, bucketKeyIngests, []byte(ref)) == nil {
			return notFound("ingest %q in namespace %q", ref, ns)
		}
		return nil
	}); err != nil {
		return content.Status{}, err
	}
	st, err := cs.db.backend.Status(ctx, backendRef(ns, ref))
	if err != nil {
		return content.Status{}, fmt.Errorf("ingest %q in namespace %q: %w", ref, ns, err)
	}
	st.Ref = ref
	return st, nil
}

// ListStatuses lists the namespace's ingests matching any of fs (fields
// ref, expected).
func (cs *ContentStore) ListStatuses(ctx context.Context, fs ...string) ([]content.Status, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	filter, err := filters.Parse(fs...)
	if err != nil {
		return nil, err
	}
	var refs []string
	if err := cs.db.view(func(tx *bolt.Tx) error {
		b := bucket(tx, []byte(ns), bucketKeyContent, bucketKeyIngests)
		if b == nil {
			return nil
		}
		return b.ForEachBucket(func(k []byte) error {
			refs = append(refs, string(k))
			return nil
		})
	}); err != nil {
		return nil, err
	}
	var out []content.Status
	for _, ref := range refs {
		st, err := cs.db.backend.Status(ctx, backendRef(ns, ref))
		if errdefs.IsNotFound(err) {
			continue // not started yet, or collected since
		} else if err != nil {
			return nil, err
		}
		st.Ref = ref
		if filter.Match(statusAdaptor(st)) {
			out = append(out, st)
		}
	}
	return out, nil
}

// Abort cancels ingest ref and drops its bytes. While a writer holds the
// ref the backend refuses (Unavailable) and the ingest stays as it was.
func (cs *ContentStore) Abort(ctx context.Context, ref string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	if err := cs.db.view(func(tx *bolt.Tx) error {
		if bucket(tx, []byte(ns), bucketKeyContent, bucketKeyIngests, []byte(ref)) == nil {
			return notFound("ingest %q in namespace %q", ref, ns)
		}
		return nil
	}); err != nil {
		return err
	}
	// The backend first: the record goes only once the bytes have gone.
	if err := cs.db.backend.Abort(ctx, backendRef(ns, ref)); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("abort ingest %q in namespace %q: %w", ref, ns, err)
	}
	return cs.db.update(func(tx *bolt.Tx) error {
		return dropIngest(ctx, tx, ns, ref)
	})
}

// Writer opens or resumes ingest ref in the context's namespace. When the
// expected blob is already stored (in this or any namespace), the
// namespace gets a reference to it and Writer returns AlreadyExists: the
// bytes are never stored twice.
func (cs *ContentStore) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	var wo content.WriterOpts
	for _, o := range opts {
		if err := o(&wo); err != nil {
			return nil, err
		}
	}
	if wo.Ref == "" {
		return nil, fmt.Errorf("content writer: ref must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	if wo.Desc.Digest != "" {
		if err := cs.shareExisting(ctx, ns, wo); err != nil {
			return nil, err
		}
	}
	w, err := cs.openIngest(ctx, ns, wo)
	if errdefs.IsAlreadyExists(err) && wo.Desc.Digest != "" {
		// Another writer committed the blob since shareExisting looked.
		if serr := cs.shareExisting(ctx, ns, wo); serr != nil {
			return nil, serr
		}
	}
	return w, err
}

// openIngest records ingest wo.Ref in namespace ns and opens its backend
// writer, under the read side of gcLock so that a sweep sees both or
// neither (a record without a backend ingest is garbage). A record made
// by this call is removed again when the backend refuses the writer,
// unless another writer holds the ref (Unavailable) and needs it.
func (cs *ContentStore) openIngest(ctx context.Context, ns string, wo content.WriterOpts) (content.Writer, error) {
	cs.db.gcLock.RLock()
	defer cs.db.gcLock.RUnlock()
	var created bool
	if err := cs.db.bolt.Update(func(tx *bolt.Tx) error {
		var err error
		created, err = recordIngest(ctx, tx, ns, wo.Ref)
		return err
	}); err != nil {
		return nil, err
	}
	w, err := cs.db.backend.Writer(ctx, content.WithRef(backendRef(ns, wo.Ref)), content.WithDescriptor(wo.Desc))
	if err != nil {
		if created && !errdefs.IsUnavailable(err) {
			_ = cs.db.bolt.Update(func(tx *bolt.Tx) error { return dropIngest(ctx, tx, ns, wo.Ref) })
		}
		return nil, err
	}
	return &nsWriter{Writer: w, db: cs.db, ns: ns, ref: wo.Ref}, nil
}

// shareExisting returns AlreadyExists when the expected blob is in the
// backend, after giving the namespace a reference to it; nil otherwise.
func (cs *ContentStore) shareExisting(ctx context.Context, ns string, wo content.WriterOpts) error {
	info, err := cs.db.backend.Info(ctx, wo.Desc.Digest)
	if err != nil {
		return nil
	}
	if wo.Desc.Size > 0 && wo.Desc.Size != info.Size {
		return fmt.Errorf("content %s is stored with size %d, the descriptor says %d: %w",
			wo.Desc.Digest, info.Size, wo.Desc.Size, errdefs.ErrFailedPrecondition)
	}
	cs.db.gcLock.RLock()
	defer cs.db.gcLock.RUnlock()
	// Check again under the lock: a sweep may have removed it meanwhile.
	if _, err := cs.db.backend.Info(ctx, wo.Desc.Digest); err != nil {
		return nil
	}
	var created bool
	err = cs.db.bolt.Update(func(tx *bolt.Tx) error {
		created, err = cs.db.addBlobRef(ctx, tx, ns, wo.Desc.Digest, info.Size, nil)
		return err
	})
	if err != nil {
		return err
	}
	if created {
		cs.db.publish(ctx, "/content/create", &eventstypes.ContentCreate{Digest: wo.Desc.Digest.String(), Size: info.Size})
	}
	return fmt.Errorf("content %s in namespace %q: %w", wo.Desc.Digest, ns, errdefs.ErrAlreadyExists)
}

// recordIngest records ingest ref of namespace ns, and in the context's
// lease, and reports whether the record is new.
func recordIngest(ctx context.Context, tx *bolt.Tx, ns, ref string) (bool, error) {
	ib, err := createBucket(tx, []byte(ns), bucketKeyContent, bucketKeyIngests)
	if err != nil {
		return false, err
	}
	created := ib.Bucket([]byte(ref)) == nil
	b, err := ib.CreateBucketIfNotExists([]byte(ref))
	if err != nil {
		return false, err
	}
	if err := b.Put(keyRef, []byte(backendRef(ns, ref))); err != nil {
		return false, err
	}
	if _, leased := leases.FromContext(ctx); leased {
		if err := b.Put(keyLeased, []byte{1}); err != nil {
			return false, err
		}
	}
	return created, addToContextLease(ctx, tx, ns, leases.Resource{Type: resourceIngests, ID: ref})
}

// dropIngest removes the record of ingest ref of namespace ns, if any, and
// its entry in the context's lease.
func dropIngest(ctx context.Context, tx *bolt.Tx, ns, ref string) error {
	if ib := bucket(tx, []byte(ns), bucketKeyContent, bucketKeyIngests); ib != nil && ib.Bucket([]byte(ref)) != nil {
		if err := ib.DeleteBucket([]byte(ref)); err != nil {
			return err
		}
	}
	return removeFromContextLease(ctx, tx, ns, leases.Resource{Type: resourceIngests, ID: ref})
}

// nsWriter commits into the backend, then turns the namespace's ingest
// record into a blob reference.
type nsWriter struct {
	content.Writer
	db  *DB
	ns  string
	ref string
}

func (w *nsWriter) Status() (content.Status, error) {
	st, err := w.Writer.Status()
	st.Ref = w.ref
	return st, err
}

func (w *nsWriter) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.Opt) error {
	var info content.Info
	for _, o := range opts {
		if err := o(&info); err != nil {
			return err
		}
	}
	if err := labels.ValidateAll(info.Labels); err != nil {
		return fmt.Errorf("commit ingest %q: %w", w.ref, err)
	}
	ctx = namespaces.WithNamespace(ctx, w.ns)
	dgst := expected
	if dgst == "" {
		dgst = w.Writer.Digest()
	}
	// Hold off the sweep from backend commit until the namespace refers
	// to the blob, else it could be collected in between.
	w.db.gcLock.RLock()
	defer w.db.gcLock.RUnlock()
	if err := w.Writer.Commit(ctx, size, expected); err != nil && !errdefs.IsAlreadyExists(err) {
		return err
	}
	bi, err := w.db.backend.Info(ctx, dgst)
	if err != nil {
		return fmt.Errorf("commit ingest %q: blob %s missing after commit: %w", w.ref, dgst, err)
	}
	var created bool
	err = w.db.bolt.Update(func(tx *bolt.Tx) error {
		if err := dropIngest(ctx, tx, w.ns, w.ref); err != nil {
			return err
		}
		created, err = w.db.addBlobRef(ctx, tx, w.ns, dgst, bi.Size, info.Labels)
		return err
	})
	if err != nil {
		return err
	}
	if !created {
		// The ingest is done with all the same.
		return fmt.Errorf("content %s in namespace %q: %w", dgst, w.ns, errdefs.ErrAlreadyExists)
	}
	w.db.publish(ctx, "/content/create", &eventstypes.ContentCreate{Digest: dgst.String(), Size: bi.Size})
	return nil
}

func statusAdaptor(st content.Status) filters.Adaptor {
	return filters.AdaptorFunc(func(fp []string) (string, bool) {
		if len(fp) == 0 {
			return "", false
		}
		switch fp[0] {
		case "ref":
			return st.Ref, st.Ref != ""
		case "expected":
			return st.Expected.String(), st.Expected != ""
		}
		return "", false
	})
}

// OpenData passes through to the backend writer when it can read its
// data back while writing (content.DataOpener).
func (w *nsWriter) OpenData() (content.ReadAtCloser, error) {
	o, ok := w.Writer.(content.DataOpener)
	if !ok {
		return nil, fmt.Errorf("ingest %q: the content store cannot read an ingest while writing it: %w", w.ref, errdefs.ErrNotImplemented)
	}
	return o.OpenData()
}
