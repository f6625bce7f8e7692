package metadata

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/berth-dev/berth/filters"
	"github.com/berth-dev/berth/images"
	"github.com/berth-dev/berth/labels"
	"github.com/berth-dev/berth/namespaces"
	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
)

// ImageStore is the images.Store of the metadata database.
type ImageStore struct{ db *DB }

var _ images.Store = (*ImageStore)(nil)

// Get returns image name of the context's namespace. When it is missing
// there but exists in other namespaces, the error names them.
func (s *ImageStore) Get(ctx context.Context, name string) (images.Image, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return images.Image{}, err
	}
	var img images.Image
	err = s.db.view(func(tx *bolt.Tx) error {
		b := bucket(tx, []byte(ns), bucketKeyImages, []byte(name))
		if b == nil {
			return s.db.notFoundElsewhere(tx, ns, "image", name, bucketKeyImages, []byte(name))
		}
		img = readImage(name, b)
		return nil
	})
	return img, err
}

// List returns the images of the namespace that match any of fs.
func (s *ImageStore) List(ctx context.Context, fs ...string) ([]images.Image, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	filter, err := filters.Parse(fs...)
	if err != nil {
		return nil, err
	}
	var out []images.Image
	err = s.db.view(func(tx *bolt.Tx) error {
		b := bucket(tx, []byte(ns), bucketKeyImages)
		if b == nil {
			return nil
		}
		return b.ForEachBucket(func(k []byte) error {
			img := readImage(string(k), b.Bucket(k))
			if filter.Match(imageAdaptor(img)) {
				out = append(out, img)
			}
			return nil
		})
	})
	return out, err
}

// Create records a new image; AlreadyExists when the name is taken.
func (s *ImageStore) Create(ctx context.Context, img images.Image) (images.Image, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return images.Image{}, err
	}
	if err := validateImage(img); err != nil {
		return images.Image{}, err
	}
	now := time.Now().UTC()
	img.CreatedAt, img.UpdatedAt = now, now
	err = s.db.update(func(tx *bolt.Tx) error {
		ib, err := createBucket(tx, []byte(ns), bucketKeyImages)
		if err != nil {
			return err
		}
		if ib.Bucket([]byte(img.Name)) != nil {
			return fmt.Errorf("image %q in namespace %q: %w", img.Name, ns, errdefs.ErrAlreadyExists)
		}
		b, err := ib.CreateBucket([]byte(img.Name))
		if err != nil {
			return err
		}
		return writeImage(b, img)
	})
	if err != nil {
		return images.Image{}, err
	}
	s.db.publish(ctx, "/images/create", &eventstypes.ImageCreate{Name: img.Name, Labels: img.Labels})
	return img, nil
}

// Update changes the fields of image img.Name named by fieldpaths.
func (s *ImageStore) Update(ctx context.Context, img images.Image, fieldpaths ...string) (images.Image, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return images.Image{}, err
	}
	if img.Name == "" {
		return images.Image{}, fmt.Errorf("image name is required for update: %w", errdefs.ErrInvalidArgument)
	}
	var updated images.Image
	err = s.db.update(func(tx *bolt.Tx) error {
		b := bucket(tx, []byte(ns), bucketKeyImages, []byte(img.Name))
		if b == nil {
			return s.db.notFoundElsewhere(tx, ns, "image", img.Name, bucketKeyImages, []byte(img.Name))
		}
		cur := readImage(img.Name, b)
		if updated, err = mergeImage(cur, img, fieldpaths); err != nil {
			return err
		}
		if err := validateImage(updated); err != nil {
			return err
		}
		updated.UpdatedAt = time.Now().UTC()
		return writeImage(b, updated)
	})
	if err != nil {
		return images.Image{}, err
	}
	s.db.publish(ctx, "/images/update", &eventstypes.ImageUpdate{Name: updated.Name, Labels: updated.Labels})
	return updated, nil
}

// Delete removes image name; with SynchronousDelete the garbage collector
// has run when it returns.
func (s *ImageStore) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	var o images.DeleteOptions
	for _, opt := range opts {
		opt(&o)
	}
	err = s.db.update(func(tx *bolt.Tx) error {
		b := bucket(tx, []byte(ns), bucketKeyImages)
		if b == nil || b.Bucket([]byte(name)) == nil {
			return s.db.notFoundElsewhere(tx, ns, "image", name, bucketKeyImages, []byte(name))
		}
		return b.DeleteBucket([]byte(name))
	})
	if err != nil {
		return err
	}
	s.db.publish(ctx, "/images/delete", &eventstypes.ImageDelete{Name: name})
	return s.db.afterDelete(ctx, o.Synchronous)
}

func mergeImage(cur, upd images.Image, fieldpaths []string) (images.Image, error) {
	if len(fieldpaths) == 0 {
		cur.Labels, cur.Target = upd.Labels, upd.Target
		return cur, nil
	}
	for _, p := range fieldpaths {
		switch {
		case p == "labels" || strings.HasPrefix(p, "labels."):
			cur.Labels, _, _ = applyMapPaths("labels", cur.Labels, upd.Labels, []string{p})
		case p == "annotations" || strings.HasPrefix(p, "annotations."):
			cur.Target.Annotations, _, _ = applyMapPaths("annotations", cur.Target.Annotations, upd.Target.Annotations, []string{p})
		case p == "target":
			cur.Target = upd.Target
		default:
			return cur, fmt.Errorf("image %q: cannot update field %q (labels, annotations, target): %w", cur.Name, p, errdefs.ErrInvalidArgument)
		}
	}
	return cur, nil
}

func validateImage(img images.Image) error {
	if img.Name == "" {
		return fmt.Errorf("image name must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	if err := labels.ValidateAll(img.Labels); err != nil {
		return fmt.Errorf("image %q: %w", img.Name, err)
	}
	if img.Target.MediaType == "" {
		return fmt.Errorf("image %q: target media type must not be empty: %w", img.Name, errdefs.ErrInvalidArgument)
	}
	if err := img.Target.Digest.Validate(); err != nil {
		return fmt.Errorf("image %q: target digest %q: %v: %w", img.Name, img.Target.Digest, err, errdefs.ErrInvalidArgument)
	}
	return nil
}

func writeImage(b *bolt.Bucket, img images.Image) error {
	if err := writeTimestamps(b, img.CreatedAt, img.UpdatedAt); err != nil {
		return err
	}
	if err := writeMap(b, bucketKeyLabels, img.Labels); err != nil {
		return err
	}
	if b.Bucket(bucketKeyTarget) != nil {
		if err := b.DeleteBucket(bucketKeyTarget); err != nil {
			return err
		}
	}
	tb, err := b.CreateBucket(bucketKeyTarget)
	if err != nil {
		return err
	}
	if err := tb.Put(keyMediaType, []byte(img.Target.MediaType)); err != nil {
		return err
	}
	if err := tb.Put(keyDigest, []byte(img.Target.Digest)); err != nil {
		return err
	}
	if err := writeInt(tb, keySize, img.Target.Size); err != nil {
		return err
	}
	return writeMap(tb, bucketKeyAnnotations, img.Target.Annotations)
}

func readImage(name string, b *bolt.Bucket) images.Image {
	img := images.Image{
		Name:      name,
		Labels:    readMap(b, bucketKeyLabels),
		CreatedAt: readTimestamp(b, keyCreatedAt),
		UpdatedAt: readTimestamp(b, keyUpdatedAt),
	}
	if tb := b.Bucket(bucketKeyTarget); tb != nil {
		img.Target = ocispec.Descriptor{
			MediaType:   string(tb.Get(keyMediaType)),
			Digest:      digest.Digest(tb.Get(keyDigest)),
			Size:        readInt(tb, keySize),
			Annotations: readMap(tb, bucketKeyAnnotations),
		}
	}
	return img
}

func imageAdaptor(img images.Image) filters.Adaptor {
	return filters.AdaptorFunc(func(fp []string) (string, bool) {
		if len(fp) == 0 {
			return "", false
		}
		switch fp[0] {
		case "name":
			return img.Name, img.Name != ""
		case "target":
			if len(fp) < 2 {
				return "", false
			}
			switch fp[1] {
			case "digest":
				return img.Target.Digest.String(), img.Target.Digest != ""
			case "mediatype":
				return img.Target.MediaType, img.Target.MediaType != ""
			}
		case "labels":
			return mapField(img.Labels, fp[1:])
		case "annotations":
			return mapField(img.Target.Annotations, fp[1:])
		}
		return "", false
	})
}

func mapField(m map[string]string, fp []string) (string, bool) {
	if len(fp) == 0 {
		return "", false
	}
	v, ok := m[strings.Join(fp, ".")]
	return v, ok
}
