// Package pull is berth's one server-side pull, used by `berth pull`, the
// Transfer service and the CRI: resolve a reference, fetch the index or
// manifest and config, then fetch every layer in parallel while each layer
// is unpacked into its own snapshot as its bytes arrive — the unpacker
// follows the download in the content ingest rather than waiting for it.
//
// Nothing unverified is kept: a layer's snapshot is committed only once the
// blob has passed its digest check at commit and the unpacked bytes match
// the config's diff_id. Everything a pull writes is held by a lease until
// the image record exists; a failed or cancelled pull releases it at once
// for the garbage collector.
package pull

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/content"
	"github.com/berth-dev/berth/images"
	"github.com/berth-dev/berth/labels"
	"github.com/berth-dev/berth/leases"
	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/remotes"
	"github.com/berth-dev/berth/snapshots"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Resolver finds and fetches what a reference names in a registry; the
// registry client (remotes/registry) is one.
type Resolver interface {
	// Resolve returns the canonical name and root descriptor of ref.
	Resolve(ctx context.Context, ref string) (name string, desc ocispec.Descriptor, err error)
	// Fetcher returns a Fetcher for the repository of ref.
	Fetcher(ctx context.Context, ref string) (remotes.Fetcher, error)
}

// Fetcher opens blobs and manifests of one repository.
type Fetcher = remotes.Fetcher

// Stores are the namespaced stores a pull writes to.
type Stores struct {
	Content content.Store
	Images  images.Store
	Leases  leases.Manager
	// Snapshotter returns the snapshotter called name, nil if none.
	Snapshotter func(name string) snapshots.Snapshotter
}

// Puller pulls images. One Puller serves the whole daemon, so that
// concurrent pulls of the same blob share one download.
type Puller struct {
	stores   Stores
	inflight *flights
	// DefaultConcurrency bounds parallel layer downloads when a pull does
	// not say (3 unless set).
	DefaultConcurrency int
}

// New returns a Puller writing to stores.
func New(stores Stores) *Puller {
	p := &Puller{stores: stores, DefaultConcurrency: 3}
	p.inflight = newFlights(p.withLease)
	return p
}

// Config is what one pull does; see the Opt functions for defaults.
type Config struct {
	Platforms    []ocispec.Platform
	AllPlatforms bool
	Snapshotter  string
	Unpack       bool
	Labels       map[string]string
	// Concurrency bounds parallel layer downloads.
	Concurrency int
	Progress    func(Progress)
	// ImageName overrides the name of the image record (default: the
	// resolved name).
	ImageName string
}

// Opt changes a Config.
type Opt func(*Config)

// WithPlatforms selects, and unpacks, the best manifest of an index for
// each of these platforms (default: the daemon's own).
func WithPlatforms(p ...ocispec.Platform) Opt { return func(c *Config) { c.Platforms = p } }

// WithAllPlatforms fetches every manifest of an index; only the best
// match for the daemon's platform is unpacked.
func WithAllPlatforms() Opt { return func(c *Config) { c.AllPlatforms = true } }

// WithSnapshotter unpacks into snapshotter name (default "overlayfs").
func WithSnapshotter(name string) Opt { return func(c *Config) { c.Snapshotter = name } }

// WithoutUnpack only fetches.
func WithoutUnpack() Opt { return func(c *Config) { c.Unpack = false } }

// WithProgress reports progress to fn, from several goroutines.
func WithProgress(fn func(Progress)) Opt { return func(c *Config) { c.Progress = fn } }

// WithImageLabels labels the image record.
func WithImageLabels(l map[string]string) Opt { return func(c *Config) { c.Labels = l } }

// WithImageName names the image record.
func WithImageName(name string) Opt { return func(c *Config) { c.ImageName = name } }

// WithConcurrency bounds parallel layer downloads (default 3).
func WithConcurrency(n int) Opt { return func(c *Config) { c.Concurrency = n } }

func newConfig(opts []Opt, concurrency int) *Config {
	c := &Config{Snapshotter: "overlayfs", Unpack: true, Concurrency: concurrency}
	for _, o := range opts {
		o(c)
	}
	if len(c.Platforms) == 0 {
		c.Platforms = []ocispec.Platform{platforms.DefaultSpec()}
	}
	if c.Progress == nil {
		c.Progress = func(Progress) {}
	}
	if c.Concurrency < 1 {
		c.Concurrency = 1
	}
	return c
}

// Pull fetches ref through r, unpacks it, and records the image in the
// context's namespace (replacing the target of an existing record).
func (p *Puller) Pull(ctx context.Context, r Resolver, ref string, opts ...Opt) (images.Image, error) {
	cfg := newConfig(opts, p.DefaultConcurrency)
	if cfg.Unpack && p.stores.Snapshotter(cfg.Snapshotter) == nil {
		return images.Image{}, fmt.Errorf("pull %s: snapshotter %q is not loaded: %w", ref, cfg.Snapshotter, errdefs.ErrNotFound)
	}
	ctx, done, err := p.withLease(ctx)
	if err != nil {
		return images.Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	defer done()
	name, root, err := r.Resolve(ctx, ref)
	if err != nil {
		return images.Image{}, fmt.Errorf("pull %s: resolve: %w", ref, err)
	}
	f, err := r.Fetcher(ctx, name)
	if err != nil {
		return images.Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	j := &job{p: p, cfg: cfg, fetcher: f, ref: name}
	if err := j.walk(ctx, root); err != nil {
		return images.Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	if cfg.ImageName != "" {
		name = cfg.ImageName
	}
	img, err := p.record(ctx, images.Image{Name: name, Target: root, Labels: cfg.Labels})
	if err != nil {
		return images.Image{}, fmt.Errorf("pull %s: record image: %w", ref, err)
	}
	log.G(ctx).Info("pulled image", "ref", ref, "digest", root.Digest)
	return img, nil
}

// seq tells apart the leases and snapshot keys that concurrent pulls make
// within the same nanosecond.
var seq atomic.Uint64

// withLease runs the pull under a fresh lease; done deletes it. Should
// berthd die before done runs, the next berthd releases the lease at
// start (ReleaseOrphans), and the lease expires in an hour anyway.
func (p *Puller) withLease(ctx context.Context) (context.Context, func(), error) {
	l, err := p.stores.Leases.Create(ctx, leases.Lease{
		ID: fmt.Sprintf("pull-%d-%d", time.Now().UnixNano(), seq.Add(1)),
		Labels: map[string]string{
			labels.GCExpire: time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
			LeaseLabel:      "true",
		},
	})
	if err != nil {
		return nil, nil, err
	}
	done := func() {
		dctx := context.WithoutCancel(ctx)
		if err := p.stores.Leases.Delete(dctx, l.ID, false); err != nil {
			log.G(ctx).Warn("pull: release lease", "lease", l.ID, "error", err)
		}
	}
	return leases.WithLease(ctx, l.ID), done, nil
}

// record creates the image, or points an existing one at the new target.
func (p *Puller) record(ctx context.Context, img images.Image) (images.Image, error) {
	created, err := p.stores.Images.Create(ctx, img)
	if err == nil || !errdefs.IsAlreadyExists(err) {
		return created, err
	}
	paths := []string{"target"}
	if img.Labels != nil {
		paths = append(paths, "labels")
	}
	return p.stores.Images.Update(ctx, img, paths...)
}
