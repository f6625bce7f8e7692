// Package push uploads an image from the content store to a registry:
// every blob under the image's target, children before parents, so that a
// registry never sees a manifest whose blobs it lacks; the root goes last,
// under the reference's tag.
package push

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/berth-dev/berth/content"
	"github.com/berth-dev/berth/images"
	"github.com/berth-dev/berth/remotes"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// Docker schema 2 media types of indexes and manifests.
const (
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
)

// Progress reports one blob pushed ("pushing", "done").
type Progress struct {
	Desc   ocispec.Descriptor
	Status string
}

// Push uploads image name of the context's namespace to ref through
// resolver. progress may be nil.
func Push(ctx context.Context, cs content.Store, is images.Store, resolver remotes.Resolver, name, ref string, progress func(Progress)) error {
	if progress == nil {
		progress = func(Progress) {}
	}
	img, err := is.Get(ctx, name)
	if err != nil {
		return err
	}
	p, err := resolver.Pusher(ctx, ref)
	if err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	u := &uploader{cs: cs, p: p, progress: progress}
	if err := u.push(ctx, img.Target, true); err != nil {
		return fmt.Errorf("push %s to %s: %w", name, ref, err)
	}
	return nil
}

type uploader struct {
	cs       content.Store
	p        remotes.Pusher
	progress func(Progress)
}

// push uploads desc after its children; root goes under the tag.
func (u *uploader) push(ctx context.Context, desc ocispec.Descriptor, root bool) error {
	children, err := u.children(ctx, desc)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(3)
	for _, c := range children {
		g.Go(func() error { return u.push(gctx, c, false) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return u.upload(ctx, desc, root)
}

func (u *uploader) upload(ctx context.Context, desc ocispec.Descriptor, root bool) error {
	ra, err := u.cs.ReaderAt(ctx, desc)
	if err != nil {
		return fmt.Errorf("blob %s (%s) is not in the content store: %w", desc.Digest, desc.MediaType, err)
	}
	defer ra.Close()
	u.progress(Progress{Desc: desc, Status: "pushing"})
	var opts []remotes.PushOpt
	if root {
		opts = append(opts, remotes.WithTag())
	}
	if err := u.p.Push(ctx, desc, ra, opts...); err != nil {
		return fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	u.progress(Progress{Desc: desc, Status: "done"})
	return nil
}

// children lists what an index or manifest refers to.
func (u *uploader) children(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	switch desc.MediaType {
	case ocispec.MediaTypeImageIndex, mediaTypeDockerManifestList:
		var idx ocispec.Index
		if err := u.readJSON(ctx, desc, &idx); err != nil {
			return nil, err
		}
		return idx.Manifests, nil
	case ocispec.MediaTypeImageManifest, mediaTypeDockerManifest:
		var m ocispec.Manifest
		if err := u.readJSON(ctx, desc, &m); err != nil {
			return nil, err
		}
		return append([]ocispec.Descriptor{m.Config}, m.Layers...), nil
	}
	return nil, nil
}

func (u *uploader) readJSON(ctx context.Context, desc ocispec.Descriptor, v any) error {
	ra, err := u.cs.ReaderAt(ctx, desc)
	if err != nil {
		return fmt.Errorf("%s %s is not in the content store: %w", desc.MediaType, desc.Digest, err)
	}
	defer ra.Close()
	b, err := io.ReadAll(io.NewSectionReader(ra, 0, ra.Size()))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s %s: malformed JSON: %v: %w", desc.MediaType, desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	return nil
}
