package pull_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/berth-dev/berth/images"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/content"
	"github.com/berth-dev/berth/content/local"
	"github.com/berth-dev/berth/metadata"
	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/namespaces"
	"github.com/berth-dev/berth/pull"
	"github.com/berth-dev/berth/snapshots"
	"github.com/berth-dev/berth/snapshots/overlay"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// env is a real metadata database over a local content store and an
// overlay snapshotter, with a Puller over it and a fake registry.
type env struct {
	t       *testing.T
	root    string
	db      *metadata.DB
	backend *local.Store
	overlay *overlay.Snapshotter
	puller  *pull.Puller
	reg     *registry
	ctx     context.Context // namespace "default"
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("pull tests unpack into overlay snapshots and need root (make test runs them as root)")
	}
	root := t.TempDir()
	backend, err := local.NewStore(filepath.Join(root, "content"))
	if err != nil {
		t.Fatal(err)
	}
	ov, err := overlay.NewSnapshotter(filepath.Join(root, "overlayfs"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := metadata.Open(filepath.Join(root, "meta.db"), backend,
		metadata.WithSnapshotters(map[string]snapshots.Snapshotter{"overlayfs": ov}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Close()
		ov.Close()
	})
	p := pull.New(pull.Stores{
		Content:     db.ContentStore(),
		Images:      db.Images(),
		Leases:      db.Leases(),
		Snapshotter: db.LookupSnapshotter,
	})
	return &env{
		t: t, root: root, db: db, backend: backend, overlay: ov, puller: p,
		reg: newRegistry(), ctx: nsCtx("default"),
	}
}

func nsCtx(ns string) context.Context {
	return namespaces.WithNamespace(context.Background(), ns)
}

func (e *env) sn() snapshots.Snapshotter { return e.db.Snapshotter("overlayfs") }

// pull pulls ref in e.ctx and fails the test on error.
func (e *env) pull(ref string, opts ...pull.Opt) {
	e.t.Helper()
	if _, err := e.puller.Pull(e.ctx, e.reg, ref, opts...); err != nil {
		e.t.Fatalf("Pull(%s): %v", ref, err)
	}
}

// checkClean checks what every pull must leave behind in namespace ctx,
// failed or not: no lease, no extract snapshot, no data file held open.
func (e *env) checkClean(ctx context.Context) {
	e.t.Helper()
	ls, err := e.db.Leases().List(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(ls) != 0 {
		e.t.Errorf("leases left after the pull: %v", ls)
	}
	for _, s := range e.snapshots(ctx) {
		if strings.HasPrefix(s.Name, "extract-") || s.Kind != snapshots.KindCommitted {
			e.t.Errorf("snapshot %q (%s) left after the pull", s.Name, s.Kind)
		}
	}
	if open := openFilesUnder(e.t, filepath.Join(e.root, "content")); len(open) > 0 {
		e.t.Errorf("files of the content store still open after the pull: %v", open)
	}
}

// snapshots lists the namespace's snapshots.
func (e *env) snapshots(ctx context.Context) []snapshots.Info {
	e.t.Helper()
	var out []snapshots.Info
	if err := e.sn().Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		out = append(out, info)
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// readTree mounts a view of snapshot parent and returns its regular files
// (path → content) and the paths of everything else, directories included.
func (e *env) readTree(ctx context.Context, parent string) map[string]string {
	e.t.Helper()
	key := "view-" + parent
	mounts, err := e.sn().View(ctx, key, parent)
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() {
		if err := e.sn().Remove(ctx, key); err != nil {
			e.t.Error(err)
		}
	}()
	files := map[string]string{}
	err = mount.WithTempMount(ctx, mounts, func(root string) error {
		return filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err != nil || p == root {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if fi.Mode().IsRegular() {
				b, err := os.ReadFile(p)
				files[rel] = string(b)
				return err
			}
			files[rel] = "d"
			if !fi.IsDir() {
				files[rel] = fi.Mode().Type().String()
			}
			return nil
		})
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return files
}

// gc runs a collection and fails the test on error.
func (e *env) gc() {
	e.t.Helper()
	if _, err := e.db.GarbageCollect(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// backendBlobs lists the digests stored in the backend, every namespace.
func (e *env) backendBlobs() []digest.Digest {
	e.t.Helper()
	var out []digest.Digest
	if err := e.backend.Walk(context.Background(), func(info content.Info) error {
		out = append(out, info.Digest)
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// openFilesUnder lists this process's open file descriptors on files under
// dir.
func openFilesUnder(t *testing.T, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir+"/") {
			out = append(out, target)
		}
	}
	return out
}

// waitFor polls cond every few milliseconds for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ---- images built in memory ----

// entry is one tar entry of a test layer.
type entry struct {
	name string
	body string // a regular file's content
	dir  bool
	link string // symlink target
}

func file(name, body string) entry { return entry{name: name, body: body} }
func dir(name string) entry        { return entry{name: name, dir: true} }

// layer is one built layer: its gzip blob and the digest of its tar.
type layer struct {
	blob   []byte
	diffID digest.Digest
	desc   ocispec.Descriptor
}

func makeLayer(t *testing.T, entries ...entry) layer {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	mtime := time.Unix(1700000000, 0)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, ModTime: mtime, Typeflag: tar.TypeReg, Size: int64(len(e.body))}
		switch {
		case e.dir:
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		case e.link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.link, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gb bytes.Buffer
	gw, err := gzip.NewWriterLevel(&gb, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gw.Write(tb.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := gw.Close(); err != nil {
		t.Fatal(err)
	}
	blob := gb.Bytes()
	return layer{
		blob:   blob,
		diffID: digest.FromBytes(tb.Bytes()),
		desc:   ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(blob), Size: int64(len(blob))},
	}
}

// image is one built image manifest and what it refers to.
type image struct {
	manifest ocispec.Descriptor
	config   ocispec.Descriptor
	layers   []layer
}

func (im image) diffIDs() []digest.Digest {
	var out []digest.Digest
	for _, l := range im.layers {
		out = append(out, l.diffID)
	}
	return out
}

// chain returns the chain IDs of the image's layers.
func (im image) chain() []string {
	var out []string
	for _, c := range images.ChainIDs(im.diffIDs()) {
		out = append(out, c.String())
	}
	return out
}

// ---- the fake registry ----

// fault changes how the registry serves one blob.
type fault struct {
	body   []byte        // served instead of the blob's bytes
	chunk  int           // bytes per Read (default: all)
	pause  time.Duration // between chunks
	gateAt int64         // with gate: stop before this offset until gate closes
	gate   chan struct{}
	onGate func() // called each time a body stops at the gate
	failAt int64  // > 0: fail with errReset once this offset is reached
}

var errReset = errors.New("connection reset by peer")

// registry is an in-memory registry: blobs by digest and tags, with
// faults per digest and counts of what was fetched.
type registry struct {
	mu        sync.Mutex
	blobs     map[digest.Digest][]byte
	tags      map[string]ocispec.Descriptor
	faults    map[digest.Digest]*fault
	fetches   map[digest.Digest]int
	active    int // bodies open now
	maxActive int
}

func newRegistry() *registry {
	return &registry{
		blobs: map[digest.Digest][]byte{}, tags: map[string]ocispec.Descriptor{},
		faults: map[digest.Digest]*fault{}, fetches: map[digest.Digest]int{},
	}
}

func (r *registry) put(b []byte) digest.Digest {
	d := digest.FromBytes(b)
	r.mu.Lock()
	r.blobs[d] = b
	r.mu.Unlock()
	return d
}

func (r *registry) tag(ref string, desc ocispec.Descriptor) {
	r.mu.Lock()
	r.tags[ref] = desc
	r.mu.Unlock()
}

func (r *registry) setFault(d digest.Digest, f *fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f == nil {
		delete(r.faults, d)
		return
	}
	r.faults[d] = f
}

func (r *registry) count(d digest.Digest) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fetches[d]
}

func (r *registry) resetCounts() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fetches = map[digest.Digest]int{}
	r.maxActive = r.active
}

func (r *registry) totalFetches() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.fetches {
		n += c
	}
	return n
}

func (r *registry) activeBodies() (now, max int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active, r.maxActive
}

// addImage stores layers, a config naming their diff IDs and a manifest.
func (r *registry) addImage(t *testing.T, platform *ocispec.Platform, layers ...layer) image {
	t.Helper()
	im := image{layers: layers}
	cfg := ocispec.Image{RootFS: ocispec.RootFS{Type: "layers", DiffIDs: im.diffIDs()}}
	if platform != nil {
		cfg.Platform = *platform
	}
	return r.addImageWithConfig(t, mustJSON(t, cfg), layers...)
}

// addImageWithConfig is addImage with the config's bytes given.
func (r *registry) addImageWithConfig(t *testing.T, cfgBytes []byte, layers ...layer) image {
	t.Helper()
	im := image{layers: layers}
	im.config = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: r.put(cfgBytes), Size: int64(len(cfgBytes))}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: im.config}
	m.SchemaVersion = 2
	for _, l := range layers {
		r.put(l.blob)
		m.Layers = append(m.Layers, l.desc)
	}
	mb := mustJSON(t, m)
	im.manifest = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: r.put(mb), Size: int64(len(mb))}
	return im
}

// platformImage is an image for one platform of an index.
type platformImage struct {
	p  ocispec.Platform
	im image
}

// addIndex stores an index of the manifests, each with its platform.
func (r *registry) addIndex(t *testing.T, ms ...platformImage) ocispec.Descriptor {
	t.Helper()
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex}
	idx.SchemaVersion = 2
	for _, m := range ms {
		d := m.im.manifest
		d.Platform = &m.p
		idx.Manifests = append(idx.Manifests, d)
	}
	b := mustJSON(t, idx)
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: r.put(b), Size: int64(len(b))}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Resolve implements pull.Resolver.
func (r *registry) Resolve(_ context.Context, ref string) (string, ocispec.Descriptor, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.tags[ref]
	if !ok {
		return "", ocispec.Descriptor{}, fmt.Errorf("%s: %w", ref, errdefs.ErrNotFound)
	}
	return ref, d, nil
}

// Fetcher implements pull.Resolver: the registry serves every repository.
func (r *registry) Fetcher(context.Context, string) (pull.Fetcher, error) { return r, nil }

// Fetch implements pull.Fetcher.
func (r *registry) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fetches[desc.Digest]++
	b, ok := r.blobs[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, errdefs.ErrNotFound)
	}
	f := r.faults[desc.Digest]
	if f == nil {
		f = &fault{}
	}
	if f.body != nil {
		b = f.body
	}
	r.active++
	r.maxActive = max(r.maxActive, r.active)
	return &body{ctx: ctx, r: r, dgst: desc.Digest, data: b, f: *f}, nil
}

// body serves one blob as a fault says.
type body struct {
	ctx    context.Context
	r      *registry
	dgst   digest.Digest
	data   []byte
	off    int64
	f      fault
	closed bool
}

func (b *body) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	if b.f.gate != nil && b.off >= b.f.gateAt {
		if b.f.onGate != nil {
			b.f.onGate()
		}
		select {
		case <-b.f.gate:
			b.f.gate = nil
		case <-b.ctx.Done():
			return 0, b.ctx.Err()
		}
	}
	if b.off >= int64(len(b.data)) {
		return 0, io.EOF
	}
	if b.f.failAt > 0 && b.off >= b.f.failAt {
		return 0, errReset
	}
	if b.f.pause > 0 && b.off > 0 {
		select {
		case <-time.After(b.f.pause):
		case <-b.ctx.Done():
			return 0, b.ctx.Err()
		}
	}
	end := int64(len(b.data))
	if b.f.chunk > 0 {
		end = min(end, b.off+int64(b.f.chunk))
	}
	if b.f.gate != nil && b.off < b.f.gateAt {
		end = min(end, b.f.gateAt)
	}
	if b.f.failAt > 0 {
		end = min(end, b.f.failAt)
	}
	n := copy(p, b.data[b.off:end])
	b.off += int64(n)
	return n, nil
}

func (b *body) Close() error {
	b.r.mu.Lock()
	defer b.r.mu.Unlock()
	if !b.closed {
		b.closed = true
		b.r.active--
	}
	return nil
}

// progressLog records Progress reports.
type progressLog struct {
	mu  sync.Mutex
	all []pull.Progress
	// closed is set once the pull returned; late counts reports after.
	closed bool
	late   []pull.Progress
}

func (l *progressLog) record(p pull.Progress) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		l.late = append(l.late, p)
		return
	}
	l.all = append(l.all, p)
}

// close marks the end of the pull and returns the reports made after
// close, when called again.
func (l *progressLog) close() []pull.Progress {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	return l.late
}

func (l *progressLog) has(d digest.Digest, st pull.Status) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.all, func(p pull.Progress) bool { return p.Digest == d && p.Status == st })
}

// gated returns a fault that stops bodies before offset off until release
// is called; reached is closed once a body stopped there.
func gated(off int64) (f *fault, reached <-chan struct{}, release func()) {
	gate, r := make(chan struct{}), make(chan struct{})
	var once, rel sync.Once
	f = &fault{gateAt: off, gate: gate, onGate: func() { once.Do(func() { close(r) }) }}
	return f, r, func() { rel.Do(func() { close(gate) }) }
}

// wait waits for ch for up to 20 s.
func wait(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// checkErrorNames checks that err's message holds every one of names.
func checkErrorNames(t *testing.T, err error, names ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one naming %q", names)
	}
	for _, n := range names {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not name %q", err, n)
		}
	}
}
