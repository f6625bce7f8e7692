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

// Abort cancels ingest ref and drops its bytes.
func (cs *ContentStore) Abort(ctx context.Context, ref string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	err = cs.db.update(func(tx *bolt.Tx) error {
		b := bucket(tx, []byte(ns), bucketKeyContent, bucketKeyIngests)
		if b == nil || b.Bucket([]byte(ref)) == nil {
			return notFound("ingest %q in namespace %q", ref, ns)
		}
		return b.DeleteBucket([]byte(ref))
	})
	if err != nil {
		return err
	}
	if err := cs.db.backend.Abort(ctx, backendRef(ns, ref)); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("abort ingest %q in namespace %q: %w", ref, ns, err)
	}
	return nil
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
	if err := cs.recordIngest(ctx, ns, wo); err != nil {
		return nil, err
	}
	wo.Ref = backendRef(ns, wo.Ref)
	w, err := cs.db.backend.Writer(ctx, content.WithRef(wo.Ref), content.WithDescriptor(wo.Desc))
	if err != nil {
		return nil, err
	}
	return &nsWriter{Writer: w, db: cs.db, ns: ns, ref: wo.Ref[len(ns)+1:]}, nil
}

// shareExisting returns AlreadyExists when the expected blob is in the
// backend, after giving the namespace a reference to it; nil otherwise.
func (cs *ContentStore) shareExisting(ctx context.Context, ns string, wo content.WriterOpts) error {
	info, err := cs.db.backend.Info(ctx, wo.Desc.Digest)
	if err != nil || (wo.Desc.Size > 0 && wo.Desc.Size != info.Size) {
		return nil
	}
	cs.db.gcLock.RLock()
	defer cs.db.gcLock.RUnlock()
	// Check again under the lock: a sweep may have removed it meanwhile.
	if _, err := cs.db.backend.Info(ctx, wo.Desc.Digest); err != nil {
		return nil
	}
	err = cs.db.bolt.Update(func(tx *bolt.Tx) error {
		return cs.db.addBlobRef(ctx, tx, ns, wo.Desc.Digest, info.Size, nil)
	})
	if err != nil {
		return err
	}
	cs.db.publish(ctx, "/content/create", &eventstypes.ContentCreate{Digest: wo.Desc.Digest.String(), Size: info.Size})
	return fmt.Errorf("content %s: %w", wo.Desc.Digest, errdefs.ErrAlreadyExists)
}

func (cs *ContentStore) recordIngest(ctx context.Context, ns string, wo content.WriterOpts) error {
	return cs.db.update(func(tx *bolt.Tx) error {
		ib, err := createBucket(tx, []byte(ns), bucketKeyContent, bucketKeyIngests)
		if err != nil {
			return err
		}
		b, err := ib.CreateBucketIfNotExists([]byte(wo.Ref))
		if err != nil {
			return err
		}
		if err := b.Put(keyRef, []byte(backendRef(ns, wo.Ref))); err != nil {
			return err
		}
		if _, leased := leases.FromContext(ctx); leased {
			if err := b.Put(keyLeased, []byte{1}); err != nil {
				return err
			}
		}
		return addToContextLease(ctx, tx, ns, leases.Resource{Type: resourceIngests, ID: wo.Ref})
	})
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
	var exists error
	err = w.db.bolt.Update(func(tx *bolt.Tx) error {
		if ib := bucket(tx, []byte(w.ns), bucketKeyContent, bucketKeyIngests); ib != nil && ib.Bucket([]byte(w.ref)) != nil {
			if err := ib.DeleteBucket([]byte(w.ref)); err != nil {
				return err
			}
		}
		err := w.db.addBlobRef(ctx, tx, w.ns, dgst, bi.Size, info.Labels)
		if errdefs.IsAlreadyExists(err) {
			exists = err // the ingest is done with all the same
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	if exists != nil {
		return exists
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
