package pull

import (
	"context"
	"fmt"
	"time"

	"github.com/berth-dev/berth/content"
	"github.com/berth-dev/berth/diff/apply"
	"github.com/berth-dev/berth/images"
	"github.com/berth-dev/berth/snapshots"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// layers fetches every layer, in parallel up to the configured
// concurrency, and (when unpack) unpacks each one in order onto its
// parent as soon as its bytes arrive. It returns the top chain ID.
func (j *job) layers(ctx context.Context, layers []ocispec.Descriptor, diffIDs []digest.Digest, unpack bool) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	downloads := make([]*download, len(layers))
	sem := make(chan struct{}, j.cfg.Concurrency)
	for i, l := range layers {
		j.cfg.Progress(Progress{Kind: "layer", Digest: l.Digest, Status: StatusWaiting, Total: l.Size})
		if j.have(ctx, l) {
			downloads[i] = existing(l)
			j.cfg.Progress(Progress{Kind: "layer", Digest: l.Digest, Status: StatusExists, Offset: l.Size, Total: l.Size})
			continue
		}
		d, leave := j.p.inflight.join(ctx, l, j.cfg.Progress, func(fctx context.Context, d *download, progress func(Progress)) {
			select {
			case sem <- struct{}{}:
			case <-fctx.Done():
				d.finish(fmt.Errorf("layer %s: %w", l.Digest, fctx.Err()))
				return
			}
			defer func() { <-sem }()
			d.run(fctx, j.p.stores.Content, j.fetcher, progress)
		})
		defer leave()
		downloads[i] = d
	}
	var top string
	if unpack {
		var err error
		if top, err = j.unpack(ctx, layers, diffIDs, downloads); err != nil {
			return "", err
		}
	}
	for i, d := range downloads {
		if err := d.Wait(ctx); err != nil {
			return "", err
		}
		if err := j.ensureRef(ctx, layers[i]); err != nil {
			return "", err
		}
	}
	return top, nil
}

// have reports whether the namespace holds blob desc already, and then
// adds it to the pull's lease: it needs no download.
func (j *job) have(ctx context.Context, desc ocispec.Descriptor) bool {
	if _, err := j.p.stores.Content.Info(ctx, desc.Digest); err != nil {
		return false
	}
	return j.ensureRef(ctx, desc) == nil
}

// ensureRef gives this pull's namespace (and lease) a reference to a blob
// that a download shared with another pull stored.
func (j *job) ensureRef(ctx context.Context, desc ocispec.Descriptor) error {
	w, err := j.p.stores.Content.Writer(ctx, content.WithRef("layer-"+desc.Digest.String()), content.WithDescriptor(desc))
	if errdefs.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	w.Close()
	return fmt.Errorf("layer %s: missing from the content store after its download: %w", desc.Digest, errdefs.ErrNotFound)
}

// unpack applies the layers in order, each onto the snapshot of the ones
// below it, skipping the chain already unpacked.
func (j *job) unpack(ctx context.Context, layers []ocispec.Descriptor, diffIDs []digest.Digest, downloads []*download) (string, error) {
	sn := j.p.stores.Snapshotter(j.cfg.Snapshotter)
	chain := images.ChainIDs(diffIDs)
	parent := ""
	for i := range layers {
		if _, err := sn.Stat(ctx, chain[i].String()); err == nil {
			parent = chain[i].String()
			continue
		}
		if err := j.unpackLayer(ctx, sn, layers[i], diffIDs[i], chain[i].String(), parent, downloads[i]); err != nil {
			return "", err
		}
		parent = chain[i].String()
	}
	return parent, nil
}

// unpackLayer unpacks one layer into a new active snapshot and commits it
// as chainID only when the blob verified and the unpacked digest is the
// config's diff_id. On any failure the snapshot is removed.
func (j *job) unpackLayer(ctx context.Context, sn snapshots.Snapshotter, desc ocispec.Descriptor, diffID digest.Digest, chainID, parent string, d *download) error {
	key := fmt.Sprintf("extract-%d-%d-%s", time.Now().UnixNano(), seq.Add(1), chainID)
	mounts, err := sn.Prepare(ctx, key, parent)
	if err != nil {
		return fmt.Errorf("layer %s: prepare snapshot: %w", desc.Digest, err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = sn.Remove(context.WithoutCancel(ctx), key)
		}
	}()
	r, err := d.Follow(ctx, func() (content.ReaderAt, error) {
		// The download may have been another namespace's: refer to the
		// blob from this one before reading it.
		if err := j.ensureRef(ctx, desc); err != nil {
			return nil, err
		}
		return j.p.stores.Content.ReaderAt(ctx, desc)
	})
	if err != nil {
		return err
	}
	defer r.Close()
	j.cfg.Progress(Progress{Kind: "layer", Digest: desc.Digest, Status: StatusUnpacking, Total: desc.Size})
	applied, aerr := apply.ApplyStream(ctx, r, mounts)
	if err := d.Wait(ctx); err != nil {
		return err // the blob failed verification: what was unpacked goes
	}
	if aerr != nil {
		return fmt.Errorf("unpack layer %s: %w", desc.Digest, aerr)
	}
	if applied.Digest != diffID {
		return fmt.Errorf("layer %s unpacks to %s, but the config says its diff_id is %s: %w", desc.Digest, applied.Digest, diffID, errdefs.ErrFailedPrecondition)
	}
	if err := sn.Commit(ctx, chainID, key); err != nil {
		if errdefs.IsAlreadyExists(err) {
			return nil // another pull unpacked the same layer meanwhile
		}
		return fmt.Errorf("layer %s: commit snapshot %s: %w", desc.Digest, chainID, err)
	}
	committed = true
	j.cfg.Progress(Progress{Kind: "layer", Digest: desc.Digest, Status: StatusUnpacked, Offset: applied.Size, Total: applied.Size})
	return nil
}
