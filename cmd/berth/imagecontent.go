package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker's image media types, which OCI's replaced but which registries and
// archives still carry.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
)

// Annotations naming an image in an index, as containerd writes them.
const (
	annotationImageName = "io.containerd.image.name"
	annotationRefName   = ocispec.AnnotationRefName
)

// maxJSONBlob bounds the indexes, manifests and configs read into memory.
const maxJSONBlob = 32 << 20

func isIndexType(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == mediaTypeDockerManifestList
}

func isManifestType(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == mediaTypeDockerManifest
}

// fromProto and toProto convert descriptors between the API and image-spec.
func fromProto(d *types.Descriptor) ocispec.Descriptor {
	return ocispec.Descriptor{
		MediaType: d.GetMediaType(), Digest: digest.Digest(d.GetDigest()),
		Size: d.GetSize(), Annotations: d.GetAnnotations(),
	}
}

func toProto(d ocispec.Descriptor) *types.Descriptor {
	return &types.Descriptor{
		MediaType: d.MediaType, Digest: d.Digest.String(), Size: d.Size, Annotations: d.Annotations,
	}
}

// readBlob reads a small blob (index, manifest, config) whole, checking its
// size and digest against desc.
func readBlob(ctx context.Context, c *conn, desc ocispec.Descriptor) ([]byte, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("blob digest %q: %v: %w", desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	if desc.Size > maxJSONBlob {
		return nil, fmt.Errorf("blob %s is %d bytes, over the %d this command reads: %w",
			desc.Digest, desc.Size, maxJSONBlob, errdefs.ErrInvalidArgument)
	}
	var buf bytes.Buffer
	if err := readContent(ctx, c, desc.Digest, &limitedWriter{w: &buf, n: maxJSONBlob}); err != nil {
		return nil, fmt.Errorf("read blob %s: %w", desc.Digest, err)
	}
	if int64(buf.Len()) != desc.Size || desc.Digest.Algorithm().FromBytes(buf.Bytes()) != desc.Digest {
		return nil, fmt.Errorf("blob %s: content store returned %d bytes that do not match it (size %d): %w",
			desc.Digest, buf.Len(), desc.Size, errdefs.ErrDataLoss)
	}
	return buf.Bytes(), nil
}

// limitedWriter fails once more than n bytes are written.
type limitedWriter struct {
	w *bytes.Buffer
	n int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if int64(l.w.Len()+len(p)) > l.n {
		return 0, fmt.Errorf("blob is over %d bytes: %w", l.n, errdefs.ErrInvalidArgument)
	}
	return l.w.Write(p)
}

func readJSON(ctx context.Context, c *conn, desc ocispec.Descriptor, v any) error {
	b, err := readBlob(ctx, c, desc)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("blob %s (%s): %v: %w", desc.Digest, desc.MediaType, err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// blobExists asks the content store whether it holds dgst in the namespace.
func blobExists(ctx context.Context, c *conn, dgst digest.Digest) (bool, error) {
	_, err := contentapi.NewContentClient(c.cc).Info(ctx, &contentapi.InfoRequest{Digest: dgst.String()})
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// configPlatform reads the platform an image config declares.
func configPlatform(ctx context.Context, c *conn, config ocispec.Descriptor) (ocispec.Platform, error) {
	var img ocispec.Image
	if err := readJSON(ctx, c, config, &img); err != nil {
		return ocispec.Platform{}, err
	}
	return platforms.Normalize(img.Platform), nil
}

// manifestChoice is the manifest chosen for a platform, with its contents.
type manifestChoice struct {
	desc     ocispec.Descriptor
	manifest ocispec.Manifest
	platform ocispec.Platform
}

// selectManifest finds target's manifest for this host's platform (which
// is berthd's too, since they share the socket): target itself when it is a
// manifest whose config matches, else the best match among an index's
// children, through nested indexes. No match is a NotFound error.
func selectManifest(ctx context.Context, c *conn, target ocispec.Descriptor) (manifestChoice, error) {
	return selectFrom(ctx, c, target, platforms.Default())
}

func selectFrom(ctx context.Context, c *conn, d ocispec.Descriptor, match platforms.MatchComparer) (manifestChoice, error) {
	switch {
	case isManifestType(d.MediaType):
		var m ocispec.Manifest
		if err := readJSON(ctx, c, d, &m); err != nil {
			return manifestChoice{}, err
		}
		if d.Platform != nil { // an index's child, already matched
			return manifestChoice{desc: d, manifest: m, platform: platforms.Normalize(*d.Platform)}, nil
		}
		p, err := configPlatform(ctx, c, m.Config)
		if err != nil {
			return manifestChoice{}, err
		}
		if !match.Match(p) {
			return manifestChoice{}, fmt.Errorf("manifest %s is for %s: %w", d.Digest, platforms.Format(p), errdefs.ErrNotFound)
		}
		return manifestChoice{desc: d, manifest: m, platform: p}, nil
	case isIndexType(d.MediaType):
		var idx ocispec.Index
		if err := readJSON(ctx, c, d, &idx); err != nil {
			return manifestChoice{}, err
		}
		for _, child := range orderByPlatform(idx.Manifests, match) {
			choice, err := selectFrom(ctx, c, child, match)
			if errdefs.IsNotFound(err) {
				continue
			}
			return choice, err
		}
		return manifestChoice{}, fmt.Errorf("index %s has no manifest for %s: %w", d.Digest, platforms.DefaultString(), errdefs.ErrNotFound)
	}
	return manifestChoice{}, fmt.Errorf("blob %s has media type %q, neither an index nor a manifest: %w",
		d.Digest, d.MediaType, errdefs.ErrNotImplemented)
}

// orderByPlatform returns the children that may match, best first; a child
// without a platform may hold anything, so it is kept, last.
func orderByPlatform(children []ocispec.Descriptor, match platforms.MatchComparer) []ocispec.Descriptor {
	var out, unknown []ocispec.Descriptor
	for _, d := range children {
		switch {
		case d.Platform == nil:
			unknown = append(unknown, d)
		case match.Match(*d.Platform):
			out = append(out, d)
		}
	}
	slices.SortStableFunc(out, func(x, y ocispec.Descriptor) int {
		switch {
		case match.Less(*x.Platform, *y.Platform):
			return -1
		case match.Less(*y.Platform, *x.Platform):
			return 1
		}
		return 0
	})
	return append(out, unknown...)
}

// platformOf renders a descriptor's platform, "-" when it names none.
func platformOf(d ocispec.Descriptor) string {
	if d.Platform == nil {
		return "-"
	}
	return platforms.Format(*d.Platform)
}

// manifestSize is what a manifest's platform takes: its config and layers.
func manifestSize(m ocispec.Manifest) int64 {
	size := m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}
	return size
}
