package metadata

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/content"
	"github.com/berth-dev/berth/filters"
	"github.com/berth-dev/berth/labels"
	"github.com/berth-dev/berth/leases"
	"github.com/berth-dev/berth/namespaces"
	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
)

// ContentStore is the content.Store seen from one namespace at a time: the
// backend's blobs and ingests filtered through the namespace's references.
type ContentStore struct{ db *DB }

var _ content.Store = (*ContentStore)(nil)

// backendRef is the backend ingest ref of ref in namespace ns.
func backendRef(ns, ref string) string { return ns + "/" + ref }

// Info describes blob dgst as referenced by the context's namespace.
func (cs *ContentStore) Info(ctx context.Context, dgst digest.Digest) (content.Info, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return content.Info{}, err
	}
	var info content.Info
	err = cs.db.view(func(tx *bolt.Tx) error {
		b := bucket(tx, []byte(ns), bucketKeyContent, bucketKeyBlob, []byte(dgst))
		if b == nil {
			return cs.db.notFoundElsewhere(tx, ns, "content", dgst.String(), bucketKeyContent, bucketKeyBlob, []byte(dgst))
		}
		info = readInfo(dgst, b)
		return nil
	})
	return info, err
}

// Update changes the labels of blob info.Digest ("labels", "labels.KEY").
func (cs *ContentStore) Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return content.Info{}, err
	}
	if err := labels.ValidateAll(info.Labels); err != nil {
		return content.Info{}, fmt.Errorf("content %s: %w", info.Digest, err)
	}
	if len(fieldpaths) == 0 {
		fieldpaths = []string{"labels"}
	}
	var out content.Info
	err = cs.db.update(func(tx *bolt.Tx) error {
		b := bucket(tx, []byte(ns), bucketKeyContent, bucketKeyBlob, []byte(info.Digest))
		if b == nil {
			return cs.db.notFoundElsewhere(tx, ns, "content", info.Digest.String(), bucketKeyContent, bucketKeyBlob, []byte(info.Digest))
		}
		cur := readInfo(info.Digest, b)
		for _, p := range fieldpaths {
			if p != "labels" && !strings.HasPrefix(p, "labels.") {
				return fmt.Errorf("content %s: cannot update field %q, only labels: %w", info.Digest, p, errdefs.ErrInvalidArgument)
			}
		}
		cur.Labels, _, _ = applyMapPaths("labels", cur.Labels, info.Labels, fieldpaths)
		cur.UpdatedAt = time.Now().UTC()
		out = cur
		if err := writeTimestamps(b, time.Time{}, cur.UpdatedAt); err != nil {
			return err
		}
		return writeMap(b, bucketKeyLabels, cur.Labels)
	})
	return out, err
}

// Walk calls fn for each blob of the namespace matching any of fs.
func (cs *ContentStore) Walk(ctx context.Context, fn content.WalkFunc, fs ...string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	filter, err := filters.Parse(fs...)
	if err != nil {
		return err
	}
	var infos []content.Info
	err = cs.db.view(func(tx *bolt.Tx) error {
		b := bucket(tx, []byte(ns), bucketKeyContent, bucketKeyBlob)
		if b == nil {
			return nil
		}
		return b.ForEachBucket(func(k []byte) error {
			info := readInfo(digest.Digest(k), b.Bucket(k))
			if filter.Match(infoAdaptor(info)) {
				infos = append(infos, info)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	// fn runs outside the transaction: it may call back into the store.
	for _, info := range infos {
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the namespace's reference to dgst; the bytes go when no
// namespace references them any more (garbage collection).
func (cs *ContentStore) Delete(ctx context.Context, dgst digest.Digest) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	err = cs.db.update(func(tx *bolt.Tx) error {
		b := bucket(tx, []byte(ns), bucketKeyContent, bucketKeyBlob)
		if b == nil || b.Bucket([]byte(dgst)) == nil {
			return cs.db.notFoundElsewhere(tx, ns, "content", dgst.String(), bucketKeyContent, bucketKeyBlob, []byte(dgst))
		}
		return b.DeleteBucket([]byte(dgst))
	})
	if err != nil {
		return err
	}
	cs.db.publish(ctx, "/content/delete", &eventstypes.ContentDelete{Digest: dgst.String()})
	return cs.db.afterDelete(ctx, false)
}

// ReaderAt opens blob desc.Digest if the namespace references it.
func (cs *ContentStore) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	if _, err := cs.Info(ctx, desc.Digest); err != nil {
		return nil, err
	}
	return cs.db.backend.ReaderAt(ctx, desc)
}

func readInfo(dgst digest.Digest, b *bolt.Bucket) content.Info {
	return content.Info{
		Digest:    dgst,
		Size:      readInt(b, keySize),
		CreatedAt: readTimestamp(b, keyCreatedAt),
		UpdatedAt: readTimestamp(b, keyUpdatedAt),
		Labels:    readMap(b, bucketKeyLabels),
	}
}

func infoAdaptor(info content.Info) filters.Adaptor {
	return filters.AdaptorFunc(func(fp []string) (string, bool) {
		if len(fp) == 0 {
			return "", false
		}
		switch fp[0] {
		case "digest":
			return info.Digest.String(), true
		case "size":
			return strconv.FormatInt(info.Size, 10), true
		case "labels":
			return mapField(info.Labels, fp[1:])
		}
		return "", false
	})
}

// addBlobRef records dgst in namespace ns (inside tx) and in the context's
// lease, and reports whether the reference is new. A reference the
// namespace had already is added to the lease all the same: the client
// holding it may drop it at any time, and the lease must keep the blob.
func (db *DB) addBlobRef(ctx context.Context, tx *bolt.Tx, ns string, dgst digest.Digest, size int64, lbls map[string]string) (bool, error) {
	bb, err := createBucket(tx, []byte(ns), bucketKeyContent, bucketKeyBlob)
	if err != nil {
		return false, err
	}
	lease := leases.Resource{Type: resourceContent, ID: dgst.String()}
	if bb.Bucket([]byte(dgst)) != nil {
		return false, addToContextLease(ctx, tx, ns, lease)
	}
	b, err := bb.CreateBucket([]byte(dgst))
	if err != nil {
		return false, err
	}
	now := time.Now().UTC()
	if err := writeTimestamps(b, now, now); err != nil {
		return false, err
	}
	if err := writeInt(b, keySize, size); err != nil {
		return false, err
	}
	if err := writeMap(b, bucketKeyLabels, lbls); err != nil {
		return false, err
	}
	return true, addToContextLease(ctx, tx, ns, lease)
}
