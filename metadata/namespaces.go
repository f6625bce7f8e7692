package metadata

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/berth-dev/berth/labels"
	"github.com/berth-dev/berth/namespaces"
	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
)

// NamespaceStore creates, labels, lists and deletes namespaces. A namespace
// also comes into being implicitly when an object is created in it, as in
// containerd.
type NamespaceStore struct{ db *DB }

// Create creates namespace ns with labels; AlreadyExists if it exists.
func (s *NamespaceStore) Create(ctx context.Context, ns string, lbls map[string]string) error {
	if err := namespaces.Validate(ns); err != nil {
		return err
	}
	if err := labels.ValidateAll(lbls); err != nil {
		return fmt.Errorf("namespace %q: %w", ns, err)
	}
	err := s.db.update(func(tx *bolt.Tx) error {
		if bucket(tx, []byte(ns)) != nil {
			return fmt.Errorf("namespace %q: %w", ns, errdefs.ErrAlreadyExists)
		}
		b, err := createBucket(tx, []byte(ns))
		if err != nil {
			return err
		}
		return writeMap(b, bucketKeyLabels, lbls)
	})
	if err != nil {
		return err
	}
	s.db.publish(namespaces.WithNamespace(ctx, ns), "/namespaces/create", &eventstypes.NamespaceCreate{Name: ns, Labels: lbls})
	return nil
}

// Labels returns the labels of ns; NotFound if it does not exist.
func (s *NamespaceStore) Labels(ctx context.Context, ns string) (map[string]string, error) {
	var out map[string]string
	err := s.db.view(func(tx *bolt.Tx) error {
		b := bucket(tx, []byte(ns))
		if b == nil {
			return notFound("namespace %q", ns)
		}
		out = readMap(b, bucketKeyLabels)
		return nil
	})
	return out, err
}

// Update applies the label fieldpaths ("labels", "labels.KEY") from lbls to
// ns. With no fieldpaths, the labels are replaced.
func (s *NamespaceStore) Update(ctx context.Context, ns string, lbls map[string]string, fieldpaths ...string) (map[string]string, error) {
	if err := labels.ValidateAll(lbls); err != nil {
		return nil, fmt.Errorf("namespace %q: %w", ns, err)
	}
	if len(fieldpaths) == 0 {
		fieldpaths = []string{"labels"}
	}
	var out map[string]string
	err := s.db.update(func(tx *bolt.Tx) error {
		b := bucket(tx, []byte(ns))
		if b == nil {
			return notFound("namespace %q", ns)
		}
		for _, p := range fieldpaths {
			if p != "labels" && !strings.HasPrefix(p, "labels.") {
				return fmt.Errorf("namespace %q: cannot update field %q, only labels: %w", ns, p, errdefs.ErrInvalidArgument)
			}
		}
		out, _, _ = applyMapPaths("labels", readMap(b, bucketKeyLabels), lbls, fieldpaths)
		return writeMap(b, bucketKeyLabels, out)
	})
	if err != nil {
		return nil, err
	}
	s.db.publish(namespaces.WithNamespace(ctx, ns), "/namespaces/update", &eventstypes.NamespaceUpdate{Name: ns, Labels: out})
	return out, nil
}

// List returns every namespace name, sorted.
func (s *NamespaceStore) List(ctx context.Context) ([]string, error) {
	var out []string
	err := s.db.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketKeyVersion)
		return v.ForEachBucket(func(k []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	sort.Strings(out)
	return out, err
}

// Delete removes ns. It fails with FailedPrecondition, naming what is
// left, while ns holds any object.
func (s *NamespaceStore) Delete(ctx context.Context, ns string) error {
	err := s.db.update(func(tx *bolt.Tx) error {
		b := bucket(tx, []byte(ns))
		if b == nil {
			return notFound("namespace %q", ns)
		}
		if left := namespaceContents(b); len(left) > 0 {
			return fmt.Errorf("namespace %q must be empty, but it still has %s; remove them first: %w",
				ns, strings.Join(left, ", "), errdefs.ErrFailedPrecondition)
		}
		return tx.Bucket(bucketKeyVersion).DeleteBucket([]byte(ns))
	})
	if err != nil {
		return err
	}
	s.db.publish(namespaces.WithNamespace(ctx, ns), "/namespaces/delete", &eventstypes.NamespaceDelete{Name: ns})
	return nil
}

// namespaceContents describes the non-empty object buckets of a namespace,
// e.g. ["images (2)", "content blobs (5)"].
func namespaceContents(nb *bolt.Bucket) []string {
	var left []string
	_ = nb.ForEachBucket(func(k []byte) error {
		switch string(k) {
		case string(bucketKeyLabels):
		case string(bucketKeyContent):
			cb := nb.Bucket(k)
			if n := countKeys(cb.Bucket(bucketKeyBlob)); n > 0 {
				left = append(left, fmt.Sprintf("content blobs (%d)", n))
			}
			if n := countKeys(cb.Bucket(bucketKeyIngests)); n > 0 {
				left = append(left, fmt.Sprintf("content ingests (%d)", n))
			}
		case string(bucketKeySnapshots):
			sb := nb.Bucket(k)
			_ = sb.ForEachBucket(func(name []byte) error {
				if n := countKeys(sb.Bucket(name)); n > 0 {
					left = append(left, fmt.Sprintf("%s snapshots (%d)", name, n))
				}
				return nil
			})
		default:
			if n := countKeys(nb.Bucket(k)); n > 0 {
				left = append(left, fmt.Sprintf("%s (%d)", k, n))
			}
		}
		return nil
	})
	return left
}

func countKeys(b *bolt.Bucket) int {
	if b == nil {
		return 0
	}
	n := 0
	_ = b.ForEach(func(k, v []byte) error {
		n++
		return nil
	})
	return n
}
