package imagestore

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/berth-dev/berth/images"
	"github.com/berth-dev/berth/pull"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
)

// PullOptions are the settings of one pull.
type PullOptions struct {
	// Snapshotter is where the layers are unpacked.
	Snapshotter string
	// Concurrency bounds parallel layer downloads; 0 is the Puller's
	// default.
	Concurrency int
	// Pinned labels the records io.cri-containerd.pinned (the sandbox
	// image).
	Pinned bool
}

// Pull pulls ref through r with p, unpacks it and records it under the
// normalized reference, its repo digest and its ID, each labeled as
// managed by the CRI.
func (s *Store) Pull(ctx context.Context, p *pull.Puller, r pull.Resolver, ref string, o PullOptions) (Image, error) {
	named, err := ParseRef(ref)
	if err != nil {
		return Image{}, err
	}
	name := named.String()
	labels := map[string]string{LabelManaged: ValueManaged}
	if o.Pinned {
		labels[LabelPinned] = ValuePinned
	}
	opts := []pull.Opt{pull.WithImageName(name), pull.WithImageLabels(labels), pull.WithSnapshotter(o.Snapshotter)}
	if o.Concurrency > 0 {
		opts = append(opts, pull.WithConcurrency(o.Concurrency))
	}
	rec, err := p.Pull(ctx, r, name, opts...)
	if err != nil {
		return Image{}, fmt.Errorf("pull image %q in namespace %q: %w", ref, namespace(ctx), err)
	}
	res, err := s.resolve(ctx, rec.Target)
	if err != nil {
		return Image{}, fmt.Errorf("pull image %q in namespace %q: %w", ref, namespace(ctx), err)
	}
	repoDigest, err := reference.WithDigest(reference.TrimNamed(named), rec.Target.Digest)
	if err != nil {
		return Image{}, fmt.Errorf("pull image %q: repo digest: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	for _, extra := range []string{repoDigest.String(), res.config.Digest.String()} {
		if extra == name {
			continue
		}
		if err := s.reference(ctx, images.Image{Name: extra, Target: rec.Target, Labels: labels}); err != nil {
			return Image{}, fmt.Errorf("pull image %q in namespace %q: record %q: %w", ref, namespace(ctx), extra, err)
		}
	}
	return s.Get(ctx, res.config.Digest.String())
}

// reference creates record img, or points an existing one at img's target
// with img's labels added.
func (s *Store) reference(ctx context.Context, img images.Image) error {
	_, err := s.images.Create(ctx, img)
	if !errors.Is(err, errdefs.ErrAlreadyExists) {
		return err
	}
	paths := []string{"target"}
	for k := range maps.Keys(img.Labels) {
		paths = append(paths, "labels."+k)
	}
	_, err = s.images.Update(ctx, img, paths...)
	return err
}
