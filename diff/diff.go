// Package diff defines how layers meet snapshots: an Applier unpacks a
// layer blob from the content store onto the mounts of an active snapshot
// and returns the layer's uncompressed descriptor (its diffID); a Comparer
// turns the difference between two sets of mounts into a new layer blob.
//
// Who calls what: the unpacker (server-side pulls) and clients such as
// ctr 1.6 (through the Diff service) Apply each layer onto a fresh active
// snapshot before committing it; image builders and `commit` Compare a
// container's snapshot with its parent.
package diff

import (
	"context"

	"github.com/berth-dev/berth/mount"
	"github.com/containerd/typeurl/v2"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Applier applies layers.
type Applier interface {
	// Apply unpacks blob desc onto mounts. The returned descriptor is the
	// uncompressed layer: media type "application/vnd.oci.image.layer.v1.tar",
	// its digest (the diffID) and size.
	Apply(ctx context.Context, desc ocispec.Descriptor, mounts []mount.Mount, opts ...ApplyOpt) (ocispec.Descriptor, error)
}

// Comparer computes layers.
type Comparer interface {
	// Compare writes the changes from lower to upper as a layer blob in
	// the content store and returns its descriptor.
	Compare(ctx context.Context, lower, upper []mount.Mount, opts ...CompareOpt) (ocispec.Descriptor, error)
}

// ApplyConfig holds the options of Apply.
type ApplyConfig struct {
	// Payloads carry per-processor data, e.g. decryption parameters,
	// keyed by processor media type.
	Payloads map[string]typeurl.Any
	// SyncFs asks for the unpacked files to be synced to disk.
	SyncFs bool
}

// ApplyOpt sets an ApplyConfig field.
type ApplyOpt func(*ApplyConfig)

// WithPayloads passes processor payloads.
func WithPayloads(p map[string]typeurl.Any) ApplyOpt {
	return func(c *ApplyConfig) { c.Payloads = p }
}

// WithSyncFs asks for a sync after applying.
func WithSyncFs(sync bool) ApplyOpt {
	return func(c *ApplyConfig) { c.SyncFs = sync }
}

// CompareConfig holds the options of Compare.
type CompareConfig struct {
	// MediaType of the layer to write; gzip-compressed OCI by default.
	MediaType string
	// Reference names the content ingest; random when empty.
	Reference string
	// Labels go on the committed blob.
	Labels map[string]string
}

// CompareOpt sets a CompareConfig field.
type CompareOpt func(*CompareConfig)

// WithMediaType sets the layer media type.
func WithMediaType(mt string) CompareOpt {
	return func(c *CompareConfig) { c.MediaType = mt }
}

// WithReference names the ingest.
func WithReference(ref string) CompareOpt {
	return func(c *CompareConfig) { c.Reference = ref }
}

// WithLabels labels the blob.
func WithLabels(l map[string]string) CompareOpt {
	return func(c *CompareConfig) { c.Labels = l }
}
