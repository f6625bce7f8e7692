package imagestore

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/berth-dev/berth/content"
	"github.com/berth-dev/berth/content/local"
	"github.com/berth-dev/berth/images"
	"github.com/berth-dev/berth/labels"
	"github.com/berth-dev/berth/metadata"
	"github.com/berth-dev/berth/namespaces"
	"github.com/berth-dev/berth/pull"
	"github.com/berth-dev/berth/remotes"
	"github.com/berth-dev/berth/snapshots"
	"github.com/berth-dev/berth/snapshots/native"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func id(s string) digest.Digest { return digest.FromString(s) }

func TestLookup(t *testing.T) {
	a := Image{ID: id("a"), References: []string{"docker.io/library/busybox:latest", "docker.io/library/busybox@" + id("ma").String(), id("a").String()}}
	b := Image{ID: id("b"), References: []string{"registry.k8s.io/pause:3.6"}}
	// c shares b's first six hex digits, not the seventh.
	hexB := b.ID.Encoded()
	seventh := "0"
	if hexB[6] == '0' {
		seventh = "1"
	}
	c := Image{ID: digest.NewDigestFromEncoded(digest.SHA256, hexB[:6]+seventh+hexB[7:]), References: []string{"c.example/c:1"}}
	imgs := []Image{a, b, c}
	for _, tc := range []struct {
		ref  string
		want digest.Digest
		err  error
	}{
		{ref: a.ID.String(), want: a.ID},
		{ref: a.ID.Encoded(), want: a.ID},
		{ref: a.ID.Encoded()[:12], want: a.ID},
		{ref: "sha256:" + a.ID.Encoded()[:12], want: a.ID},
		{ref: "busybox", want: a.ID},
		{ref: "busybox:latest", want: a.ID},
		{ref: "docker.io/library/busybox:latest", want: a.ID},
		{ref: "busybox@" + id("ma").String(), want: a.ID},
		{ref: "registry.k8s.io/pause:3.6", want: b.ID},
		{ref: "registry.k8s.io/pause", err: errdefs.ErrNotFound},
		{ref: id("missing").String(), err: errdefs.ErrNotFound},
		{ref: "nothex", err: errdefs.ErrNotFound},
		{ref: b.ID.Encoded()[:6], err: errdefs.ErrInvalidArgument},
		{ref: b.ID.Encoded()[:7], want: b.ID},
		{ref: "", err: errdefs.ErrInvalidArgument},
	} {
		got, err := Lookup(imgs, tc.ref)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("Lookup(%q) = %v, %v; want %v", tc.ref, got.ID, err, tc.err)
			}
			continue
		}
		if err != nil || got.ID != tc.want {
			t.Errorf("Lookup(%q) = %v, %v; want %v", tc.ref, got.ID, err, tc.want)
		}
	}
}

func TestParseRef(t *testing.T) {
	dgst := id("m").String()
	for ref, want := range map[string]string{
		"busybox":                           "docker.io/library/busybox:latest",
		"library/busybox:1.36":              "docker.io/library/busybox:1.36",
		"registry.k8s.io/pause:3.6":         "registry.k8s.io/pause:3.6",
		"127.0.0.1:5000/app":                "127.0.0.1:5000/app:latest",
		"busybox@" + dgst:                   "docker.io/library/busybox@" + dgst,
		"busybox:1.36@" + dgst:              "docker.io/library/busybox@" + dgst,
		"gcr.io/x/y:tag@" + dgst:            "gcr.io/x/y@" + dgst,
		"localhost/test-image:tag.with.dot": "localhost/test-image:tag.with.dot",
	} {
		got, err := ParseRef(ref)
		if err != nil || got.String() != want {
			t.Errorf("ParseRef(%q) = %v, %v; want %s", ref, got, err, want)
		}
	}
	for _, bad := range []string{"", "Busybox", "a b", id("x").Encoded()} {
		if _, err := ParseRef(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseRef(%q): %v, want InvalidArgument", bad, err)
		}
	}
}

func TestRepoTagsAndDigests(t *testing.T) {
	dgst := id("m").String()
	img := Image{References: []string{
		"docker.io/library/busybox:latest", "docker.io/library/busybox@" + dgst,
		"registry.k8s.io/pause:3.6", id("config").String(), "import-2024-01-01",
	}}
	if got, want := img.RepoTags(), []string{"docker.io/library/busybox:latest", "registry.k8s.io/pause:3.6", "docker.io/library/import-2024-01-01:latest"}; !slices.Equal(got, want[:2]) {
		t.Errorf("RepoTags() = %v, want %v", got, want[:2])
	}
	if got, want := img.RepoDigests(), []string{"docker.io/library/busybox@" + dgst}; !slices.Equal(got, want) {
		t.Errorf("RepoDigests() = %v, want %v", got, want)
	}
}

func TestUser(t *testing.T) {
	for user, want := range map[string]struct {
		uid  int64
		name string
	}{
		"":               {-1, ""},
		"1002":           {1002, ""},
		"1003:1004":      {1003, ""},
		"www-data":       {-1, "www-data"},
		"www-data:1004":  {-1, "www-data"},
		"0":              {0, ""},
		":1004":          {-1, ""},
		"1000user":       {-1, "1000user"},
		"nobody:nogroup": {-1, "nobody"},
	} {
		img := Image{Spec: ocispec.Image{Config: ocispec.ImageConfig{User: user}}}
		uid, name := img.User()
		gotUID := int64(-1)
		if uid != nil {
			gotUID = *uid
		}
		if gotUID != want.uid || name != want.name {
			t.Errorf("User %q: uid %d, name %q; want %d, %q", user, gotUID, name, want.uid, want.name)
		}
	}
}

// env is a metadata database over a real content store and a native
// snapshotter, in namespace k8s.io.
type env struct {
	ctx   context.Context
	db    *metadata.DB
	store *Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	cs, err := local.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	sn, err := native.NewSnapshotter(filepath.Join(dir, "native"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := metadata.Open(filepath.Join(dir, "meta.db"), cs, metadata.WithSnapshotters(map[string]snapshots.Snapshotter{"native": sn}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &env{
		ctx:   namespaces.WithNamespace(context.Background(), "k8s.io"),
		db:    db,
		store: New(db.Images(), db.ContentStore(), platforms.DefaultSpec()),
	}
}

// blob stores v (bytes as they are, anything else as JSON).
func (e *env) blob(t *testing.T, mediaType string, v any) ocispec.Descriptor {
	t.Helper()
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
	err := content.WriteBlob(e.ctx, e.db.ContentStore(), "test-"+desc.Digest.String(), bytes.NewReader(b), desc)
	if err != nil && !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return desc
}

// testImage is an image's documents: a plain tar layer, a config with
// user, a manifest, and an index of it and a manifest for another
// platform.
type testImage struct {
	layer, config, manifest, index ocispec.Descriptor
	blobs                          map[digest.Digest][]byte
}

func (e *env) image(t *testing.T, name, user string) testImage {
	t.Helper()
	ti := testImage{blobs: map[digest.Digest][]byte{}}
	keep := func(mediaType string, v any) ocispec.Descriptor {
		d := e.blob(t, mediaType, v)
		b, _ := v.([]byte)
		if b == nil {
			b, _ = json.Marshal(v)
		}
		ti.blobs[d.Digest] = b
		return d
	}
	layer := tarOf(t, map[string]string{"etc/" + name: name})
	ti.layer = keep(ocispec.MediaTypeImageLayer, layer)
	ti.config = keep(ocispec.MediaTypeImageConfig, ocispec.Image{
		Platform: platforms.DefaultSpec(), Config: ocispec.ImageConfig{User: user},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{ti.layer.Digest}},
	})
	ti.manifest = keep(ocispec.MediaTypeImageManifest, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: ti.config, Layers: []ocispec.Descriptor{ti.layer},
	})
	e.label(t, ti.manifest.Digest, map[string]string{
		labels.GCRefContent + ".config": ti.config.Digest.String(),
		labels.GCRefContent + ".l.0":    ti.layer.Digest.String(),
	})
	other := ocispec.Platform{OS: "linux", Architecture: "s390x"}
	if runtime.GOARCH == "s390x" {
		other.Architecture = "arm64"
	}
	host := platforms.DefaultSpec()
	m, o := ti.manifest, ti.manifest
	m.Platform, o.Platform = &host, &other
	o.Digest = id("manifest of another platform, never fetched")
	ti.index = keep(ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{o, m},
	})
	e.label(t, ti.index.Digest, map[string]string{labels.GCRefContent + ".m.0": ti.manifest.Digest.String()})
	return ti
}

// label sets the garbage collection labels a pull writes.
func (e *env) label(t *testing.T, dgst digest.Digest, l map[string]string) {
	t.Helper()
	if _, err := e.db.ContentStore().Update(e.ctx, content.Info{Digest: dgst, Labels: l}, "labels"); err != nil {
		t.Fatal(err)
	}
}

func (e *env) record(t *testing.T, name string, target ocispec.Descriptor, labels map[string]string) {
	t.Helper()
	if _, err := e.db.Images().Create(e.ctx, images.Image{Name: name, Target: target, Labels: labels}); err != nil {
		t.Fatal(err)
	}
}

func tarOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestStoreGroupsRecords(t *testing.T) {
	e := newEnv(t)
	a := e.image(t, "a", "1002:1003")
	b := e.image(t, "b", "www-data")
	e.record(t, "docker.io/library/a:1", a.index, nil)
	e.record(t, "docker.io/library/a:latest", a.manifest, map[string]string{LabelPinned: ValuePinned})
	e.record(t, "docker.io/library/a@"+a.index.Digest.String(), a.index, nil)
	e.record(t, a.config.Digest.String(), a.index, nil)
	e.record(t, "registry.k8s.io/b:2", b.manifest, nil)
	// Left out: its target is not in the content store.
	e.record(t, "broken.example/x:1", ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: id("gone"), Size: 2}, nil)

	imgs, err := e.store.List(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 {
		t.Fatalf("List: %d images, want 2: %+v", len(imgs), imgs)
	}
	got, err := e.store.Get(e.ctx, "a:1")
	if err != nil {
		t.Fatal(err)
	}
	wantRefs := []string{"docker.io/library/a:1", "docker.io/library/a:latest", "docker.io/library/a@" + a.index.Digest.String(), a.config.Digest.String()}
	slices.Sort(wantRefs)
	if got.ID != a.config.Digest || !slices.Equal(got.References, wantRefs) || !got.Pinned {
		t.Errorf("image a: %v %v pinned %v; want %v %v pinned", got.ID, got.References, got.Pinned, a.config.Digest, wantRefs)
	}
	if want := a.index.Size + a.manifest.Size + a.config.Size + a.layer.Size; got.Size != want {
		t.Errorf("size %d, want %d (index, manifest, config, layer)", got.Size, want)
	}
	if got.ChainID != a.layer.Digest {
		t.Errorf("chain ID %s, want the one layer's diff ID %s", got.ChainID, a.layer.Digest)
	}
	if uid, name := got.User(); uid == nil || *uid != 1002 || name != "" {
		t.Errorf("user of a: %v %q", uid, name)
	}
	gb, err := e.store.Get(e.ctx, b.config.Digest.Encoded()[:12])
	if err != nil || gb.ID != b.config.Digest || gb.Pinned || gb.Size != b.manifest.Size+b.config.Size+b.layer.Size {
		t.Errorf("image b by short ID: %+v, %v", gb, err)
	}

	// Another namespace sees none of it.
	other := namespaces.WithNamespace(context.Background(), "default")
	if _, err := e.store.Get(other, "a:1"); !errdefs.IsNotFound(err) {
		t.Errorf("Get in namespace default: %v, want NotFound", err)
	}
}

func TestStoreRemove(t *testing.T) {
	e := newEnv(t)
	a := e.image(t, "a", "")
	b := e.image(t, "b", "")
	e.record(t, "docker.io/library/a:1", a.index, nil)
	e.record(t, "docker.io/library/a:2", a.manifest, nil)
	e.record(t, a.config.Digest.String(), a.index, nil)
	e.record(t, "docker.io/library/b:1", b.index, nil)

	if err := e.store.Remove(e.ctx, "a:2"); err != nil {
		t.Fatal(err)
	}
	recs, err := e.db.Images().List(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Name != "docker.io/library/b:1" {
		t.Errorf("records after removing a by one tag: %v", recs)
	}
	if _, err := e.store.Get(e.ctx, a.config.Digest.String()); !errdefs.IsNotFound(err) {
		t.Errorf("a by ID after removal: %v", err)
	}
	// The removal collected a's blobs, not b's.
	if _, err := e.db.ContentStore().Info(e.ctx, a.config.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("a's config after removal: %v, want NotFound", err)
	}
	if _, err := e.db.ContentStore().Info(e.ctx, b.config.Digest); err != nil {
		t.Errorf("b's config after removing a: %v", err)
	}
	for _, missing := range []string{"a:2", a.config.Digest.String(), "never.example/x:1"} {
		if err := e.store.Remove(e.ctx, missing); err != nil {
			t.Errorf("Remove(%q) of a missing image: %v", missing, err)
		}
	}
}

// fakeRegistry serves one image, from memory.
type fakeRegistry struct {
	root  ocispec.Descriptor
	blobs map[digest.Digest][]byte
}

func (f *fakeRegistry) Resolve(_ context.Context, ref string) (string, ocispec.Descriptor, error) {
	return ref, f.root, nil
}

func (f *fakeRegistry) Fetcher(context.Context, string) (remotes.Fetcher, error) { return f, nil }

func (f *fakeRegistry) Fetch(_ context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	b, ok := f.blobs[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, errdefs.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func TestPull(t *testing.T) {
	src := newEnv(t)
	img := src.image(t, "app", "")
	reg := &fakeRegistry{root: img.index, blobs: img.blobs}

	e := newEnv(t)
	p := pull.New(pull.Stores{Content: e.db.ContentStore(), Images: e.db.Images(), Leases: e.db.Leases(), Snapshotter: e.db.LookupSnapshotter})
	for range 2 { // pulling again changes nothing
		got, err := e.store.Pull(e.ctx, p, reg, "registry.example/app:1", PullOptions{Snapshotter: "native", Pinned: true})
		if err != nil {
			t.Fatal(err)
		}
		repoDigest := "registry.example/app@" + img.index.Digest.String()
		want := []string{"registry.example/app:1", repoDigest, img.config.Digest.String()}
		slices.Sort(want)
		if got.ID != img.config.Digest || !slices.Equal(got.References, want) || !got.Pinned {
			t.Fatalf("pulled %v %v pinned %v; want %v %v", got.ID, got.References, got.Pinned, img.config.Digest, want)
		}
		if !slices.Equal(got.RepoTags(), []string{"registry.example/app:1"}) || !slices.Equal(got.RepoDigests(), []string{repoDigest}) {
			t.Errorf("repo tags %v, digests %v", got.RepoTags(), got.RepoDigests())
		}
	}
	recs, err := e.db.Images().List(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Labels[LabelManaged] != ValueManaged || r.Labels[LabelPinned] != ValuePinned || r.Target.Digest != img.index.Digest {
			t.Errorf("record %s: target %s, labels %v", r.Name, r.Target.Digest, r.Labels)
		}
	}
	// Unpacked into the snapshotter asked for.
	if _, err := e.db.LookupSnapshotter("native").Stat(e.ctx, img.layer.Digest.String()); err != nil {
		t.Errorf("snapshot of the layer: %v", err)
	}
	// A pull by digest records the repo digest and the ID only.
	got, err := e.store.Pull(e.ctx, p, reg, "other.example/app@"+img.index.Digest.String(), PullOptions{Snapshotter: "native"})
	if err != nil {
		t.Fatal(err)
	}
	if tags := got.RepoTags(); len(tags) != 1 || len(got.RepoDigests()) != 2 {
		t.Errorf("after a pull by digest: tags %v, digests %v", tags, got.RepoDigests())
	}
	if _, err := e.store.Pull(e.ctx, p, reg, "Bad Ref", PullOptions{Snapshotter: "native"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("pull of a malformed reference: %v, want InvalidArgument", err)
	}
}
