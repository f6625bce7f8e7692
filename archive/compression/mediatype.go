package compression

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker's layer media types (image manifest v2, schema 2).
const (
	MediaTypeDockerLayer            = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerLayerGzip        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerLayerForeign     = "application/vnd.docker.image.rootfs.foreign.diff.tar"
	MediaTypeDockerLayerForeignGzip = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// encryptedSuffix marks an ocicrypt layer; the compression named before it
// is that of the decrypted bytes.
const encryptedSuffix = "+encrypted"

// FromMediaType returns the compression a layer media type declares: OCI
// layers (tar, tar+gzip, tar+zstd, and their deprecated nondistributable
// forms), Docker schema 2 layers (including foreign ones), each optionally
// followed by "+encrypted". The Docker ".tar" types are sometimes served
// compressed, which is one more reason DecompressStream sniffs instead of
// trusting this answer. Any other media type is an error naming it, of class
// errdefs.ErrNotImplemented as in containerd.
func FromMediaType(mediaType string) (Compression, error) {
	mt := strings.TrimSuffix(mediaType, encryptedSuffix)
	// The nondistributable types are deprecated by image-spec 1.1 but
	// still served by registries, so they are still read.
	switch mt {
	case ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerNonDistributable,
		MediaTypeDockerLayer, MediaTypeDockerLayerForeign:
		return Uncompressed, nil
	case ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerNonDistributableGzip,
		MediaTypeDockerLayerGzip, MediaTypeDockerLayerForeignGzip:
		return Gzip, nil
	case ocispec.MediaTypeImageLayerZstd, ocispec.MediaTypeImageLayerNonDistributableZstd:
		return Zstd, nil
	}
	return Uncompressed, fmt.Errorf("layer media type %q: unknown: %w", mediaType, errdefs.ErrNotImplemented)
}

// IsNondistributable reports whether a layer media type marks a layer that
// may not be pushed to another registry (OCI nondistributable or Docker
// foreign), ignoring any "+encrypted" suffix.
func IsNondistributable(mediaType string) bool {
	mt := strings.TrimSuffix(mediaType, encryptedSuffix)
	return strings.HasPrefix(mt, "application/vnd.oci.image.layer.nondistributable.") ||
		strings.HasPrefix(mt, "application/vnd.docker.image.rootfs.foreign.")
}

// MediaType returns the OCI layer media type for a layer compressed with c.
func MediaType(c Compression) (string, error) {
	switch c {
	case Uncompressed:
		return ocispec.MediaTypeImageLayer, nil
	case Gzip:
		return ocispec.MediaTypeImageLayerGzip, nil
	case Zstd:
		return ocispec.MediaTypeImageLayerZstd, nil
	}
	return "", fmt.Errorf("layer media type for %v: %w", c, errdefs.ErrNotImplemented)
}
