package metadata

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/berth-dev/berth/filters"
	"github.com/berth-dev/berth/labels"
	"github.com/berth-dev/berth/leases"
	"github.com/berth-dev/berth/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// Resource types a lease can hold.
const (
	resourceContent   = "content"
	resourceIngests   = "ingests"
	resourceSnapshots = "snapshots"
)

// LeaseManager is the leases.Manager of the metadata database.
type LeaseManager struct{ db *DB }

var _ leases.Manager = (*LeaseManager)(nil)

// Create records a new lease; AlreadyExists when the ID is taken.
func (lm *LeaseManager) Create(ctx context.Context, l leases.Lease) (leases.Lease, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return leases.Lease{}, err
	}
	// containerd takes any non-empty lease ID: ctr and the client
	// libraries generate "<nanoseconds>-<URL-safe base64>", which may
	// hold "--" or end in '_', so identifier rules would refuse them.
	if l.ID == "" {
		return leases.Lease{}, fmt.Errorf("lease id must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	if len(l.ID) > bolt.MaxKeySize {
		return leases.Lease{}, fmt.Errorf("lease id is %d bytes, over the maximum of %d: %w", len(l.ID), bolt.MaxKeySize, errdefs.ErrInvalidArgument)
	}
	if err := labels.ValidateAll(l.Labels); err != nil {
		return leases.Lease{}, fmt.Errorf("lease %q: %w", l.ID, err)
	}
	if exp, ok := l.Labels[labels.GCExpire]; ok {
		if _, err := time.Parse(time.RFC3339Nano, exp); err != nil {
			return leases.Lease{}, fmt.Errorf("lease %q: label %s=%q is not an RFC 3339 time: %w", l.ID, labels.GCExpire, exp, errdefs.ErrInvalidArgument)
		}
	}
	l.CreatedAt = time.Now().UTC()
	err = lm.db.update(func(tx *bolt.Tx) error {
		lb, err := createBucket(tx, []byte(ns), bucketKeyLeases)
		if err != nil {
			return err
		}
		if lb.Bucket([]byte(l.ID)) != nil {
			return fmt.Errorf("lease %q in namespace %q: %w", l.ID, ns, errdefs.ErrAlreadyExists)
		}
		b, err := lb.CreateBucket([]byte(l.ID))
		if err != nil {
			return err
		}
		if err := writeTimestamps(b, l.CreatedAt, time.Time{}); err != nil {
			return err
		}
		return writeMap(b, bucketKeyLabels, l.Labels)
	})
	return l, err
}

// Delete removes lease id, releasing what it held.
func (lm *LeaseManager) Delete(ctx context.Context, id string, sync bool) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	err = lm.db.update(func(tx *bolt.Tx) error {
		lb := bucket(tx, []byte(ns), bucketKeyLeases)
		if lb == nil || lb.Bucket([]byte(id)) == nil {
			return notFound("lease %q in namespace %q", id, ns)
		}
		return lb.DeleteBucket([]byte(id))
	})
	if err != nil {
		return err
	}
	return lm.db.afterDelete(ctx, sync)
}

// List returns the leases matching any of fs (fields id, labels.KEY).
func (lm *LeaseManager) List(ctx context.Context, fs ...string) ([]leases.Lease, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	filter, err := filters.Parse(fs...)
	if err != nil {
		return nil, err
	}
	var out []leases.Lease
	err = lm.db.view(func(tx *bolt.Tx) error {
		lb := bucket(tx, []byte(ns), bucketKeyLeases)
		if lb == nil {
			return nil
		}
		return lb.ForEachBucket(func(k []byte) error {
			b := lb.Bucket(k)
			l := leases.Lease{ID: string(k), CreatedAt: readTimestamp(b, keyCreatedAt), Labels: readMap(b, bucketKeyLabels)}
			if filter.Match(leaseAdaptor(l)) {
				out = append(out, l)
			}
			return nil
		})
	})
	return out, err
}

// AddResource adds r to lease id.
func (lm *LeaseManager) AddResource(ctx context.Context, id string, r leases.Resource) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	return lm.db.update(func(tx *bolt.Tx) error {
		return addLeaseResource(tx, ns, id, r)
	})
}

// DeleteResource removes r from lease id.
func (lm *LeaseManager) DeleteResource(ctx context.Context, id string, r leases.Resource) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	err = lm.db.update(func(tx *bolt.Tx) error {
		lb := bucket(tx, []byte(ns), bucketKeyLeases, []byte(id))
		if lb == nil {
			return notFound("lease %q in namespace %q", id, ns)
		}
		path, key, err := resourcePath(r)
		if err != nil {
			return err
		}
		if b := nestedBucket(lb, path); b != nil {
			return b.Delete(key)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return lm.db.afterDelete(ctx, false)
}

// ListResources lists what lease id holds.
func (lm *LeaseManager) ListResources(ctx context.Context, id string) ([]leases.Resource, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	var out []leases.Resource
	err = lm.db.view(func(tx *bolt.Tx) error {
		lb := bucket(tx, []byte(ns), bucketKeyLeases, []byte(id))
		if lb == nil {
			return notFound("lease %q in namespace %q", id, ns)
		}
		out = leaseResources(lb)
		return nil
	})
	return out, err
}

// leaseResources lists the resources recorded in lease bucket lb.
func leaseResources(lb *bolt.Bucket) []leases.Resource {
	var out []leases.Resource
	for _, t := range []string{resourceContent, resourceIngests} {
		if b := lb.Bucket([]byte(t)); b != nil {
			_ = b.ForEach(func(k, _ []byte) error {
				out = append(out, leases.Resource{Type: t, ID: string(k)})
				return nil
			})
		}
	}
	if sb := lb.Bucket(bucketKeySnapshots); sb != nil {
		_ = sb.ForEachBucket(func(name []byte) error {
			return sb.Bucket(name).ForEach(func(k, _ []byte) error {
				out = append(out, leases.Resource{Type: resourceSnapshots + "/" + string(name), ID: string(k)})
				return nil
			})
		})
	}
	return out
}

func addLeaseResource(tx *bolt.Tx, ns, id string, r leases.Resource) error {
	lb := bucket(tx, []byte(ns), bucketKeyLeases, []byte(id))
	if lb == nil {
		return notFound("lease %q in namespace %q", id, ns)
	}
	path, key, err := resourcePath(r)
	if err != nil {
		return err
	}
	b := lb
	for _, p := range path {
		if b, err = b.CreateBucketIfNotExists(p); err != nil {
			return err
		}
	}
	return b.Put(key, nil)
}

// addToContextLease adds r to the lease of ctx, if any.
func addToContextLease(ctx context.Context, tx *bolt.Tx, ns string, r leases.Resource) error {
	id, ok := leases.FromContext(ctx)
	if !ok {
		return nil
	}
	return addLeaseResource(tx, ns, id, r)
}

// removeFromContextLease removes r from the lease of ctx, if any and if
// it still exists.
func removeFromContextLease(ctx context.Context, tx *bolt.Tx, ns string, r leases.Resource) error {
	id, ok := leases.FromContext(ctx)
	if !ok {
		return nil
	}
	lb := bucket(tx, []byte(ns), bucketKeyLeases, []byte(id))
	if lb == nil {
		return nil
	}
	path, key, err := resourcePath(r)
	if err != nil {
		return err
	}
	if b := nestedBucket(lb, path); b != nil {
		return b.Delete(key)
	}
	return nil
}

// resourcePath maps a resource to its sub-bucket path and key in a lease.
func resourcePath(r leases.Resource) ([][]byte, []byte, error) {
	if r.ID == "" {
		return nil, nil, fmt.Errorf("lease resource of type %q: id must not be empty: %w", r.Type, errdefs.ErrInvalidArgument)
	}
	switch {
	case r.Type == resourceContent:
		if _, err := digest.Parse(r.ID); err != nil {
			return nil, nil, fmt.Errorf("lease resource content %q: not a digest: %v: %w", r.ID, err, errdefs.ErrInvalidArgument)
		}
		return [][]byte{[]byte(resourceContent)}, []byte(r.ID), nil
	case r.Type == resourceIngests:
		return [][]byte{[]byte(resourceIngests)}, []byte(r.ID), nil
	case strings.HasPrefix(r.Type, resourceSnapshots+"/") && len(r.Type) > len(resourceSnapshots)+1:
		return [][]byte{bucketKeySnapshots, []byte(r.Type[len(resourceSnapshots)+1:])}, []byte(r.ID), nil
	}
	return nil, nil, fmt.Errorf("lease resource type %q: unsupported (content, ingests, snapshots/NAME): %w", r.Type, errdefs.ErrNotImplemented)
}

func nestedBucket(b *bolt.Bucket, path [][]byte) *bolt.Bucket {
	for _, p := range path {
		if b == nil {
			return nil
		}
		b = b.Bucket(p)
	}
	return b
}

func leaseAdaptor(l leases.Lease) filters.Adaptor {
	return filters.AdaptorFunc(func(fp []string) (string, bool) {
		if len(fp) == 0 {
			return "", false
		}
		switch fp[0] {
		case "id":
			return l.ID, l.ID != ""
		case "labels":
			return mapField(l.Labels, fp[1:])
		}
		return "", false
	})
}
