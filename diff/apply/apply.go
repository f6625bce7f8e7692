// Package apply implements diff.Applier and diff.Comparer over a content
// store: layers are decompressed and unpacked as one stream, and straight
// into an overlay upper directory or a bind mount's source when the mounts
// allow it, so that no mount is needed on the hot path.
package apply

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/berth-dev/berth/archive"
	"github.com/berth-dev/berth/archive/compression"
	"github.com/berth-dev/berth/content"
	"github.com/berth-dev/berth/diff"
	"github.com/berth-dev/berth/mount"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Differ applies and compares layers of a content store.
type Differ struct {
	store content.Store
}

var (
	_ diff.Applier  = (*Differ)(nil)
	_ diff.Comparer = (*Differ)(nil)
)

// New returns a Differ over store.
func New(store content.Store) *Differ { return &Differ{store: store} }

// Apply unpacks blob desc onto mounts.
func (d *Differ) Apply(ctx context.Context, desc ocispec.Descriptor, mounts []mount.Mount, opts ...diff.ApplyOpt) (ocispec.Descriptor, error) {
	var cfg diff.ApplyConfig
	for _, o := range opts {
		o(&cfg)
	}
	if strings.HasSuffix(desc.MediaType, "+encrypted") {
		return ocispec.Descriptor{}, fmt.Errorf("apply layer %s: encrypted layers (%s) are not supported yet: %w", desc.Digest, desc.MediaType, errdefs.ErrNotImplemented)
	}
	if _, err := compression.FromMediaType(desc.MediaType); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("apply layer %s: %w", desc.Digest, err)
	}
	ra, err := d.store.ReaderAt(ctx, desc)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("apply layer %s: %w", desc.Digest, err)
	}
	defer ra.Close()
	applied, err := ApplyStream(ctx, io.NewSectionReader(ra, 0, ra.Size()), mounts)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("apply layer %s: %w", desc.Digest, err)
	}
	if cfg.SyncFs {
		unix.Sync()
	}
	return applied, nil
}

// ApplyStream decompresses the layer r and unpacks it onto mounts,
// returning the uncompressed layer's descriptor. The unpacker calls it
// with the download stream itself.
func ApplyStream(ctx context.Context, r io.Reader, mounts []mount.Mount) (ocispec.Descriptor, error) {
	dr, _, err := compression.DecompressStream(r)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer dr.Close()
	digester := digest.Canonical.Digester()
	counted := &countingReader{r: io.TeeReader(dr, digester.Hash())}
	if err := applyTo(ctx, counted, mounts); err != nil {
		return ocispec.Descriptor{}, err
	}
	// The tar's end-of-archive padding is part of the diffID.
	if _, err := io.Copy(io.Discard, counted); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("read layer to its end: %w", err)
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digester.Digest(), Size: counted.n}, nil
}

// applyTo unpacks r onto mounts: straight into the directory when the
// mounts are a single bind or overlay (its upper directory, with whiteouts
// in overlay form), else through a temporary mount.
func applyTo(ctx context.Context, r io.Reader, mounts []mount.Mount) error {
	if dir, overlay, ok := directTarget(mounts); ok {
		_, err := archive.Apply(ctx, dir, r, archive.WithConvertWhiteout(overlay))
		return err
	}
	return mount.WithTempMount(ctx, mounts, func(root string) error {
		_, err := archive.Apply(ctx, root, r)
		return err
	})
}

// directTarget returns the directory a layer can be unpacked into without
// mounting, and whether it is an overlay upper directory.
func directTarget(mounts []mount.Mount) (string, bool, bool) {
	if len(mounts) != 1 {
		return "", false, false
	}
	m := mounts[0]
	switch m.Type {
	case "bind", "rbind":
		for _, o := range m.Options {
			if o == "ro" {
				return "", false, false
			}
		}
		return m.Source, false, true
	case "overlay":
		for _, o := range m.Options {
			if upper, ok := strings.CutPrefix(o, "upperdir="); ok {
				return upper, true, true
			}
		}
	}
	return "", false, false
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
