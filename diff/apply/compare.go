package apply

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/berth-dev/berth/archive"
	"github.com/berth-dev/berth/archive/compression"
	"github.com/berth-dev/berth/content"
	"github.com/berth-dev/berth/diff"
	"github.com/berth-dev/berth/mount"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// LabelUncompressed is the label containerd puts on a layer blob naming
// its uncompressed digest.
const LabelUncompressed = "containerd.io/uncompressed"

// Compare mounts lower read-only and upper, writes their difference as a
// layer into the content store and returns its descriptor.
func (d *Differ) Compare(ctx context.Context, lower, upper []mount.Mount, opts ...diff.CompareOpt) (ocispec.Descriptor, error) {
	cfg := diff.CompareConfig{MediaType: ocispec.MediaTypeImageLayerGzip}
	for _, o := range opts {
		o(&cfg)
	}
	comp, err := compression.FromMediaType(cfg.MediaType)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("diff: %w", err)
	}
	if cfg.Reference == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		cfg.Reference = "diff-" + hex.EncodeToString(b)
	}
	var desc ocispec.Descriptor
	err = mount.WithTempMount(ctx, readOnly(lower), func(lowerRoot string) error {
		return mount.WithTempMount(ctx, upper, func(upperRoot string) error {
			desc, err = d.writeDiff(ctx, cfg, comp, lowerRoot, upperRoot)
			return err
		})
	})
	return desc, err
}

func (d *Differ) writeDiff(ctx context.Context, cfg diff.CompareConfig, comp compression.Compression, lowerRoot, upperRoot string) (ocispec.Descriptor, error) {
	w, err := d.store.Writer(ctx, content.WithRef(cfg.Reference))
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("diff: open ingest %q: %w", cfg.Reference, err)
	}
	committed := false
	defer func() {
		w.Close()
		if !committed { // a failed diff leaves no ingest behind
			_ = d.store.Abort(context.WithoutCancel(ctx), cfg.Reference)
		}
	}()
	if err := w.Truncate(0); err != nil {
		return ocispec.Descriptor{}, err
	}
	cw, err := compression.CompressStream(w, comp)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	uncompressed := digest.Canonical.Digester()
	if err := archive.WriteDiff(ctx, io.MultiWriter(cw, uncompressed.Hash()), lowerRoot, upperRoot); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("diff: %w", err)
	}
	if err := cw.Close(); err != nil {
		return ocispec.Descriptor{}, err
	}
	st, err := w.Status()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	labels := map[string]string{LabelUncompressed: uncompressed.Digest().String()}
	for k, v := range cfg.Labels {
		labels[k] = v
	}
	dgst := w.Digest()
	if err := w.Commit(ctx, st.Offset, dgst, content.WithLabels(labels)); err != nil && !errdefs.IsAlreadyExists(err) {
		return ocispec.Descriptor{}, fmt.Errorf("diff: commit layer: %w", err)
	}
	committed = true
	return ocispec.Descriptor{MediaType: cfg.MediaType, Digest: dgst, Size: st.Offset}, nil
}

// readOnly returns mounts with bind mounts made read-only.
func readOnly(mounts []mount.Mount) []mount.Mount {
	out := make([]mount.Mount, len(mounts))
	for i, m := range mounts {
		out[i] = m
		if m.Type == "bind" || m.Type == "rbind" {
			out[i].Options = append(append([]string(nil), m.Options...), "ro")
		}
	}
	return out
}
