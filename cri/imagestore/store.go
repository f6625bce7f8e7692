// Package imagestore is the CRI's view of the image records of a
// namespace. containerd's metadata knows records (a name and a target
// descriptor); the CRI knows images: one per image configuration, its ID
// the config's digest, known under every record whose target resolves,
// for the node's platform, to that configuration. Its references are the
// record names, split into repo tags (name:tag) and repo digests
// (name@sha256:...); the record named by the ID itself is neither.
//
// A pull through the CRI records, as containerd's CRI does, the reference
// it was asked for, the repo digest and the ID, all labeled
// io.cri-containerd.image=managed; records made by other clients (ctr,
// berth) in the same namespace are seen as well. Removing an image
// removes every record of it.
//
// The store reads the records at each call, so it never disagrees with
// other clients of the namespace; what a target resolves to is cached by
// target digest, which content addressing makes safe.
package imagestore

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/berth-dev/berth/content"
	"github.com/berth-dev/berth/images"
	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/namespaces"
	"github.com/berth-dev/berth/pull"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Labels of the records the CRI writes, as containerd's CRI names them.
const (
	LabelManaged = "io.cri-containerd.image"
	ValueManaged = "managed"
	// LabelPinned marks images the kubelet must not garbage collect (the
	// sandbox image).
	LabelPinned = "io.cri-containerd.pinned"
	ValuePinned = "pinned"
)

// maxDocumentSize bounds an index, manifest or config read into memory.
const maxDocumentSize = 8 << 20

// Image is one image as the CRI sees it.
type Image struct {
	// ID is the digest of the image configuration.
	ID digest.Digest
	// References are the names of the records of the image, sorted.
	References []string
	// Target is the target of the first record; records of one image may
	// differ in target (an index and one of its manifests).
	Target ocispec.Descriptor
	// Config is the descriptor of the configuration; Spec its content.
	Config ocispec.Descriptor
	Spec   ocispec.Image
	// ChainID names the unpacked image in a snapshotter; "" for an image
	// without layers.
	ChainID digest.Digest
	// Size is what the image takes in the content store for this
	// platform: index, manifest, config and layers, compressed.
	Size int64
	// Pinned is true when a record is labeled io.cri-containerd.pinned.
	Pinned bool
}

// RepoTags are the references that name a tag, normalized
// ("docker.io/library/busybox:1.36").
func (i Image) RepoTags() []string {
	var out []string
	for _, r := range i.References {
		ref, err := reference.ParseAnyReference(r)
		if _, digested := ref.(reference.Digested); err != nil || digested {
			continue
		}
		if tagged, ok := ref.(reference.NamedTagged); ok {
			out = append(out, tagged.String())
		}
	}
	return out
}

// RepoDigests are the references by digest
// ("registry.k8s.io/pause@sha256:..."); the record named by the bare ID is
// not one.
func (i Image) RepoDigests() []string {
	var out []string
	for _, r := range i.References {
		ref, err := reference.ParseAnyReference(r)
		if err != nil {
			continue
		}
		if canonical, ok := ref.(reference.Canonical); ok {
			out = append(out, canonical.String())
		}
	}
	return out
}

// User is who the image runs as by default, from the config's User: a
// numeric user gives uid, a name gives username (the group is dropped);
// nil and "" when the image names none.
func (i Image) User() (uid *int64, username string) {
	user, _, _ := strings.Cut(i.Spec.Config.User, ":")
	if user == "" {
		return nil, ""
	}
	if n, err := strconv.ParseInt(user, 10, 64); err == nil {
		return &n, ""
	}
	return nil, user
}

// Store resolves, lists and removes the CRI's images of the namespace of
// each call's context.
type Store struct {
	images   images.Store
	content  content.Provider
	platform platforms.MatchComparer

	mu sync.Mutex
	// resolved caches what each target resolves to, by target digest;
	// each List keeps only the targets still recorded.
	resolved map[digest.Digest]resolved
}

// resolved is what a target stands for on this platform.
type resolved struct {
	config  ocispec.Descriptor
	spec    ocispec.Image
	chainID digest.Digest
	size    int64
}

// New returns a Store over the records of is and the blobs of cp, seeing
// each image for platform (the node's: platforms.DefaultSpec()).
func New(is images.Store, cp content.Provider, platform ocispec.Platform) *Store {
	return &Store{images: is, content: cp, platform: platforms.Only(platform), resolved: map[digest.Digest]resolved{}}
}

// List returns the images of the namespace, by ID. Records whose target
// does not resolve (missing blobs, no manifest for the platform) are left
// out, as containerd's CRI leaves them out.
func (s *Store) List(ctx context.Context) ([]Image, error) {
	recs, err := s.images.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list images in namespace %q: %w", namespace(ctx), err)
	}
	s.mu.Lock()
	cached := s.resolved
	s.mu.Unlock()
	next := make(map[digest.Digest]resolved, len(recs))
	byID := map[digest.Digest]*Image{}
	for _, rec := range recs {
		r, ok := next[rec.Target.Digest]
		if !ok {
			if r, ok = cached[rec.Target.Digest]; !ok {
				if r, err = s.resolve(ctx, rec.Target); err != nil {
					log.G(ctx).Debug("image record left out of the CRI's images", "image", rec.Name, "error", err)
					continue
				}
			}
			next[rec.Target.Digest] = r
		}
		img := byID[r.config.Digest]
		if img == nil {
			img = &Image{ID: r.config.Digest, Target: rec.Target, Config: r.config, Spec: r.spec, ChainID: r.chainID, Size: r.size}
			byID[r.config.Digest] = img
		}
		img.References = append(img.References, rec.Name)
		img.Pinned = img.Pinned || rec.Labels[LabelPinned] == ValuePinned
	}
	s.mu.Lock()
	s.resolved = next
	s.mu.Unlock()
	out := make([]Image, 0, len(byID))
	for _, img := range byID {
		slices.Sort(img.References)
		out = append(out, *img)
	}
	slices.SortFunc(out, func(a, b Image) int { return strings.Compare(a.ID.String(), b.ID.String()) })
	return out, nil
}

// Get returns the image that refOrID names: an image ID (sha256:<hex>), a
// reference (tag or digest, normalized: "busybox" is
// docker.io/library/busybox:latest), or an unambiguous prefix of an ID's
// hex, with or without "sha256:". NotFound names the namespace.
func (s *Store) Get(ctx context.Context, refOrID string) (Image, error) {
	imgs, err := s.List(ctx)
	if err != nil {
		return Image{}, err
	}
	img, err := Lookup(imgs, refOrID)
	if err != nil {
		return Image{}, fmt.Errorf("image %q in namespace %q: %w", refOrID, namespace(ctx), err)
	}
	return img, nil
}

// Lookup finds what refOrID names among imgs (see Store.Get): NotFound, or
// InvalidArgument for an ID prefix that several images share.
func Lookup(imgs []Image, refOrID string) (Image, error) {
	if refOrID == "" {
		return Image{}, fmt.Errorf("no image named: %w", errdefs.ErrInvalidArgument)
	}
	if id, err := digest.Parse(refOrID); err == nil {
		for _, img := range imgs {
			if img.ID == id {
				return img, nil
			}
		}
		return Image{}, errdefs.ErrNotFound
	}
	if named, err := ParseRef(refOrID); err == nil {
		name := named.String()
		for _, img := range imgs {
			if slices.Contains(img.References, name) {
				return img, nil
			}
		}
	}
	return lookupPrefix(imgs, strings.TrimPrefix(refOrID, string(digest.SHA256)+":"))
}

// lookupPrefix finds the image whose ID's hex starts with prefix.
func lookupPrefix(imgs []Image, prefix string) (Image, error) {
	if prefix == "" || strings.Trim(prefix, "0123456789abcdef") != "" {
		return Image{}, errdefs.ErrNotFound
	}
	var found []Image
	for _, img := range imgs {
		if strings.HasPrefix(img.ID.Encoded(), prefix) {
			found = append(found, img)
		}
	}
	switch len(found) {
	case 0:
		return Image{}, errdefs.ErrNotFound
	case 1:
		return found[0], nil
	}
	return Image{}, fmt.Errorf("short image ID %q matches %d images, give more of it: %w", prefix, len(found), errdefs.ErrInvalidArgument)
}

// ParseRef normalizes an image reference as containerd's CRI does:
// "busybox" is docker.io/library/busybox:latest, and a reference with
// both a tag and a digest keeps only the digest.
func ParseRef(ref string) (reference.Named, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	if canonical, ok := named.(reference.Canonical); ok {
		if _, tagged := named.(reference.Tagged); tagged {
			return reference.WithDigest(reference.TrimNamed(named), canonical.Digest())
		}
		return named, nil
	}
	return reference.TagNameOnly(named), nil
}

// Remove removes every record of the image refOrID names; an image that
// does not exist is already removed. The last record goes with a
// synchronous garbage collection, so the space is freed on return.
func (s *Store) Remove(ctx context.Context, refOrID string) error {
	img, err := s.Get(ctx, refOrID)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for i, name := range img.References {
		var opts []images.DeleteOpt
		if i == len(img.References)-1 {
			opts = append(opts, images.SynchronousDelete())
		}
		if err := s.images.Delete(ctx, name, opts...); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove image %s (%q) in namespace %q: record %q: %w", img.ID, refOrID, namespace(ctx), name, err)
		}
	}
	return nil
}

// resolve reads what target stands for on the store's platform.
func (s *Store) resolve(ctx context.Context, target ocispec.Descriptor) (resolved, error) {
	var r resolved
	desc := target
	for depth := 0; ; depth++ {
		switch desc.MediaType {
		case ocispec.MediaTypeImageIndex, pull.MediaTypeDockerManifestList:
			if depth > 1 {
				return r, fmt.Errorf("index %s: indexes nested too deep: %w", desc.Digest, errdefs.ErrNotImplemented)
			}
			var idx ocispec.Index
			if err := s.readJSON(ctx, desc, &idx); err != nil {
				return r, err
			}
			m, ok := s.bestManifest(idx.Manifests)
			if !ok {
				return r, fmt.Errorf("index %s has no manifest for platform %s: %w", desc.Digest, platforms.FormatAll(platforms.DefaultSpec()), errdefs.ErrNotFound)
			}
			r.size += desc.Size
			desc = m
		case ocispec.MediaTypeImageManifest, pull.MediaTypeDockerManifest:
			return s.resolveManifest(ctx, desc, r)
		default:
			return r, fmt.Errorf("%s has media type %q, not an index or a manifest: %w", desc.Digest, desc.MediaType, errdefs.ErrNotImplemented)
		}
	}
}

func (s *Store) resolveManifest(ctx context.Context, desc ocispec.Descriptor, r resolved) (resolved, error) {
	var m ocispec.Manifest
	if err := s.readJSON(ctx, desc, &m); err != nil {
		return r, err
	}
	if err := s.readJSON(ctx, m.Config, &r.spec); err != nil {
		return r, err
	}
	r.config = m.Config
	r.size += desc.Size + m.Config.Size
	for _, l := range m.Layers {
		r.size += l.Size
	}
	if ids := images.ChainIDs(r.spec.RootFS.DiffIDs); len(ids) > 0 {
		r.chainID = ids[len(ids)-1]
	}
	return r, nil
}

// bestManifest picks the manifest of an index that matches the platform
// best; an entry without a platform stands for any, as in the pull.
func (s *Store) bestManifest(ms []ocispec.Descriptor) (ocispec.Descriptor, bool) {
	var best, anyPlatform *ocispec.Descriptor
	for i := range ms {
		c := &ms[i]
		if c.Platform == nil {
			if anyPlatform == nil {
				anyPlatform = c
			}
			continue
		}
		if s.platform.Match(*c.Platform) && (best == nil || s.platform.Less(*c.Platform, *best.Platform)) {
			best = c
		}
	}
	if best == nil {
		best = anyPlatform
	}
	if best == nil {
		return ocispec.Descriptor{}, false
	}
	return *best, true
}

// readJSON decodes blob desc of the content store.
func (s *Store) readJSON(ctx context.Context, desc ocispec.Descriptor, v any) error {
	ra, err := s.content.ReaderAt(ctx, desc)
	if err != nil {
		return fmt.Errorf("read %s: %w", desc.Digest, err)
	}
	defer ra.Close()
	if ra.Size() > maxDocumentSize {
		return fmt.Errorf("%s is %d bytes, more than the %d an index, manifest or config may have: %w", desc.Digest, ra.Size(), maxDocumentSize, errdefs.ErrInvalidArgument)
	}
	b, err := io.ReadAll(io.NewSectionReader(ra, 0, ra.Size()))
	if err != nil {
		return fmt.Errorf("read %s: %w", desc.Digest, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %v: %w", desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	return nil
}

func namespace(ctx context.Context) string {
	ns, _ := namespaces.Namespace(ctx)
	return ns
}
