// Package images defines berth's image records: a name in a namespace
// pointing at a root descriptor (an index or a manifest) in the content store.
//
// An image record does not own content by itself; garbage collection keeps
// the target blob, and that blob's containerd.io/gc.ref.content.* labels
// keep the rest of the image (config, layers, per-platform manifests).
package images

import (
	"context"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is one named image in a namespace.
type Image struct {
	Name      string
	Labels    map[string]string
	Target    ocispec.Descriptor
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Store keeps the image records of every namespace; the namespace of each
// call comes from ctx.
type Store interface {
	Get(ctx context.Context, name string) (Image, error)
	// List returns the images matching any of filters (containerd filter
	// syntax over name, target.digest, target.mediatype, labels.KEY).
	List(ctx context.Context, filters ...string) ([]Image, error)
	// Create fails with AlreadyExists when the name is taken.
	Create(ctx context.Context, image Image) (Image, error)
	// Update changes the fields named by fieldpaths ("labels",
	// "labels.KEY", "target", "annotations", "annotations.KEY"); with none,
	// labels and target are replaced.
	Update(ctx context.Context, image Image, fieldpaths ...string) (Image, error)
	// Delete removes the record; with SynchronousDelete, garbage collection
	// has run before Delete returns.
	Delete(ctx context.Context, name string, opts ...DeleteOpt) error
}

// DeleteOptions are the options of Store.Delete.
type DeleteOptions struct {
	Synchronous bool
}

// DeleteOpt sets a DeleteOptions field.
type DeleteOpt func(*DeleteOptions)

// SynchronousDelete makes Delete wait for garbage collection.
func SynchronousDelete() DeleteOpt {
	return func(o *DeleteOptions) { o.Synchronous = true }
}

// ChainIDs returns the chain IDs of a stack of layer diff IDs, as the OCI
// image spec defines them: the first is the first diff ID, each next one
// the digest of "<previous chain ID> <diff ID>". The last one names the
// unpacked image in a snapshotter.
func ChainIDs(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		out[i] = digest.FromString(out[i-1].String() + " " + d.String())
	}
	return out
}
