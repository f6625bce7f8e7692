package pull

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/archive/compression"
	"github.com/berth-dev/berth/content"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of Docker schema 2, which registries still serve.
const (
	MediaTypeDockerManifestList  = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerManifest      = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerConfig        = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerSchema1       = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeDockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// maxManifestSize bounds what is read into memory for a manifest, an index
// or a config.
const maxManifestSize = 8 << 20

// job is one pull in progress.
type job struct {
	p       *Puller
	cfg     *Config
	fetcher Fetcher
	ref     string
}

// walk fetches what desc is and everything under it.
func (j *job) walk(ctx context.Context, desc ocispec.Descriptor) error {
	switch desc.MediaType {
	case ocispec.MediaTypeImageIndex, MediaTypeDockerManifestList:
		return j.index(ctx, desc)
	case ocispec.MediaTypeImageManifest, MediaTypeDockerManifest:
		return j.manifest(ctx, desc, j.cfg.Unpack)
	case mediaTypeDockerSchema1, mediaTypeDockerSchema1Signed:
		return fmt.Errorf("manifest %s is Docker schema 1, which berth does not support: rebuild or repush the image with a current tool (schema 2 or OCI): %w", desc.Digest, errdefs.ErrNotImplemented)
	}
	return fmt.Errorf("%s has unknown media type %q (expected an OCI or Docker schema 2 index or manifest): %w", desc.Digest, desc.MediaType, errdefs.ErrNotImplemented)
}

func (j *job) index(ctx context.Context, desc ocispec.Descriptor) error {
	var idx ocispec.Index
	err := j.fetchJSON(ctx, desc, "index", &idx, func() error {
		if idx.SchemaVersion != 2 || len(idx.Manifests) == 0 {
			return fmt.Errorf("index %s: schemaVersion %d with %d manifests is not a valid index: %w", desc.Digest, idx.SchemaVersion, len(idx.Manifests), errdefs.ErrInvalidArgument)
		}
		return nil
	})
	if err != nil {
		return err
	}
	children := j.selectManifests(idx.Manifests)
	if len(children) == 0 {
		return fmt.Errorf("index %s has no manifest for platform %s: %w", desc.Digest, platformNames(j.cfg.Platforms), errdefs.ErrNotFound)
	}
	unpackable := map[digest.Digest]bool{}
	for _, c := range bestManifests(idx.Manifests, j.unpackPlatforms()) {
		unpackable[c.Digest] = true
	}
	lbls := map[string]string{}
	for i, c := range children {
		saved := j.cfg.Unpack
		j.cfg.Unpack = saved && unpackable[c.Digest] // the others are fetched, not unpacked
		err := j.walk(ctx, c)
		j.cfg.Unpack = saved
		if err != nil {
			return err
		}
		lbls["containerd.io/gc.ref.content.m."+strconv.Itoa(i)] = c.Digest.String()
	}
	return j.label(ctx, desc.Digest, lbls)
}

// unpackPlatforms are the platforms whose manifests are unpacked: those
// the pull selects, but only the daemon's own when it fetches them all.
func (j *job) unpackPlatforms() []ocispec.Platform {
	if j.cfg.AllPlatforms {
		return []ocispec.Platform{platforms.DefaultSpec()}
	}
	return j.cfg.Platforms
}

// selectManifests picks, for each wanted platform, its best manifest; with
// AllPlatforms, every manifest.
func (j *job) selectManifests(ms []ocispec.Descriptor) []ocispec.Descriptor {
	if j.cfg.AllPlatforms {
		return ms
	}
	return bestManifests(ms, j.cfg.Platforms)
}

// bestManifests picks, for each platform of ps, the manifest of ms that
// matches it best, if any. An entry that names no platform stands for any,
// as in containerd: it is taken when no entry names a matching platform.
func bestManifests(ms []ocispec.Descriptor, ps []ocispec.Platform) []ocispec.Descriptor {
	var out []ocispec.Descriptor
	seen := map[digest.Digest]bool{}
	for _, want := range ps {
		m := platforms.Only(want)
		var best, anyPlatform *ocispec.Descriptor
		for i := range ms {
			c := &ms[i]
			if c.Platform == nil {
				if anyPlatform == nil && isManifest(c.MediaType) {
					anyPlatform = c
				}
				continue
			}
			if !m.Match(*c.Platform) {
				continue
			}
			if best == nil || m.Less(*c.Platform, *best.Platform) {
				best = c
			}
		}
		if best == nil {
			best = anyPlatform
		}
		if best != nil && !seen[best.Digest] {
			seen[best.Digest] = true
			out = append(out, *best)
		}
	}
	return out
}

func isManifest(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageManifest || mediaType == MediaTypeDockerManifest
}

func (j *job) manifest(ctx context.Context, desc ocispec.Descriptor, unpack bool) error {
	var m ocispec.Manifest
	if err := j.fetchJSON(ctx, desc, "manifest", &m, func() error { return validateManifest(desc, &m) }); err != nil {
		return err
	}
	var img ocispec.Image
	if err := j.fetchJSON(ctx, m.Config, "config", &img, nil); err != nil {
		return err
	}
	if unpack {
		if err := checkLayerTypes(desc, m.Layers); err != nil {
			return err
		}
	}
	if unpack && len(img.RootFS.DiffIDs) != len(m.Layers) {
		return fmt.Errorf("config %s lists %d diff_ids for the %d layers of manifest %s: %w", m.Config.Digest, len(img.RootFS.DiffIDs), len(m.Layers), desc.Digest, errdefs.ErrInvalidArgument)
	}
	top, err := j.layers(ctx, m.Layers, img.RootFS.DiffIDs, unpack)
	if err != nil {
		return err
	}
	if unpack {
		if err := j.label(ctx, m.Config.Digest, map[string]string{"containerd.io/gc.ref.snapshot." + j.cfg.Snapshotter: top}); err != nil {
			return err
		}
	}
	lbls := map[string]string{"containerd.io/gc.ref.content.config": m.Config.Digest.String()}
	for i, l := range m.Layers {
		lbls["containerd.io/gc.ref.content.l."+strconv.Itoa(i)] = l.Digest.String()
	}
	return j.label(ctx, desc.Digest, lbls)
}

func validateManifest(desc ocispec.Descriptor, m *ocispec.Manifest) error {
	bad := func(what string) error {
		return fmt.Errorf("manifest %s: %s: %w", desc.Digest, what, errdefs.ErrInvalidArgument)
	}
	switch {
	case m.SchemaVersion != 2:
		return bad(fmt.Sprintf("schemaVersion is %d, not 2", m.SchemaVersion))
	case m.Config.Digest.Validate() != nil:
		return bad(fmt.Sprintf("config digest %q is invalid", m.Config.Digest))
	case m.MediaType != "" && m.MediaType != desc.MediaType:
		return bad(fmt.Sprintf("mediaType %q differs from the descriptor's %q", m.MediaType, desc.MediaType))
	}
	for i, l := range m.Layers {
		if l.Digest.Validate() != nil || l.Size < 0 {
			return bad(fmt.Sprintf("layer %d has digest %q and size %d", i, l.Digest, l.Size))
		}
	}
	return nil
}

// checkLayerTypes fails, before any layer is fetched, when a layer of
// manifest desc is of a media type the unpacker cannot read: unknown, or
// encrypted.
func checkLayerTypes(desc ocispec.Descriptor, layers []ocispec.Descriptor) error {
	for _, l := range layers {
		if strings.HasSuffix(l.MediaType, "+encrypted") {
			return fmt.Errorf("manifest %s: layer %s is encrypted (%s), which berth cannot unpack yet: %w",
				desc.Digest, l.Digest, l.MediaType, errdefs.ErrNotImplemented)
		}
		if _, err := compression.FromMediaType(l.MediaType); err != nil {
			return fmt.Errorf("manifest %s: layer %s cannot be unpacked: %w", desc.Digest, l.Digest, err)
		}
	}
	return nil
}

// fetchJSON decodes a manifest, index or config into v and runs check
// (if not nil) on it: from the content store when present, else fetched,
// verified, decoded and checked, and only then stored, so that a document
// berth refuses is never committed.
func (j *job) fetchJSON(ctx context.Context, desc ocispec.Descriptor, kind string, v any, check func() error) error {
	if desc.Size > maxManifestSize {
		return fmt.Errorf("%s %s is %d bytes, over the %d byte limit: %w", kind, desc.Digest, desc.Size, maxManifestSize, errdefs.ErrInvalidArgument)
	}
	b, stored, err := j.readSmall(ctx, desc, kind)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s %s: malformed JSON: %v: %w", kind, desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	if check != nil {
		if err := check(); err != nil {
			return err
		}
	}
	if stored {
		j.cfg.Progress(Progress{Kind: kind, Digest: desc.Digest, Status: StatusExists, Offset: desc.Size, Total: desc.Size})
		return nil
	}
	if err := content.WriteBlob(ctx, j.p.stores.Content, kind+"-"+desc.Digest.String(), bytes.NewReader(b), desc); err != nil {
		return fmt.Errorf("store %s %s: %w", kind, desc.Digest, err)
	}
	j.cfg.Progress(Progress{Kind: kind, Digest: desc.Digest, Status: StatusDone, Offset: desc.Size, Total: desc.Size})
	return nil
}

// readSmall returns the bytes of desc from the content store (stored
// true) or, verified, from the registry.
func (j *job) readSmall(ctx context.Context, desc ocispec.Descriptor, kind string) (b []byte, stored bool, err error) {
	if ra, rerr := j.p.stores.Content.ReaderAt(ctx, desc); rerr == nil {
		defer ra.Close()
		b, err = io.ReadAll(io.NewSectionReader(ra, 0, ra.Size()))
		return b, true, err
	}
	if j.adopt(ctx, desc, kind) {
		return j.readSmall(ctx, desc, kind)
	}
	rc, err := j.fetcher.Fetch(ctx, desc)
	if err != nil {
		return nil, false, fmt.Errorf("fetch %s %s: %w", kind, desc.Digest, err)
	}
	defer rc.Close()
	b, err = io.ReadAll(io.LimitReader(rc, maxManifestSize+1))
	if err != nil {
		return nil, false, fmt.Errorf("fetch %s %s: %w", kind, desc.Digest, err)
	}
	if err := verify(desc, b); err != nil {
		return nil, false, fmt.Errorf("%s: %w", kind, err)
	}
	return b, false, nil
}

// adopt gives the namespace a reference to a document another namespace
// stored (the bytes are on disk once, verified when they were written):
// opening a writer with the full descriptor answers AlreadyExists then.
func (j *job) adopt(ctx context.Context, desc ocispec.Descriptor, kind string) bool {
	w, err := j.p.stores.Content.Writer(ctx, content.WithRef(kind+"-"+desc.Digest.String()), content.WithDescriptor(desc))
	if err == nil {
		w.Close()
	}
	return errdefs.IsAlreadyExists(err)
}

func verify(desc ocispec.Descriptor, b []byte) error {
	if int64(len(b)) != desc.Size {
		return fmt.Errorf("%s: got %d bytes, the descriptor says %d: %w", desc.Digest, len(b), desc.Size, errdefs.ErrFailedPrecondition)
	}
	if got := desc.Digest.Algorithm().FromBytes(b); got != desc.Digest {
		return fmt.Errorf("%s: the bytes received have digest %s: %w", desc.Digest, got, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// label merges lbls into blob dgst's labels.
func (j *job) label(ctx context.Context, dgst digest.Digest, lbls map[string]string) error {
	paths := make([]string, 0, len(lbls))
	for k := range lbls {
		paths = append(paths, "labels."+k)
	}
	_, err := j.p.stores.Content.Update(ctx, content.Info{Digest: dgst, Labels: lbls}, paths...)
	if err != nil {
		return fmt.Errorf("label %s: %w", dgst, err)
	}
	return nil
}

func platformNames(ps []ocispec.Platform) string {
	var b bytes.Buffer
	for i, p := range ps {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(platforms.Format(p))
	}
	return b.String()
}
