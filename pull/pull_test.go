package pull_test

import (
	"context"
	"github.com/berth-dev/berth/images"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/berth-dev/berth/pull"
	"github.com/berth-dev/berth/snapshots"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// threeLayers is an image whose top layer deletes a file and makes a
// directory opaque, over two layers that add and replace files.
func threeLayers(t *testing.T) []layer {
	return []layer{
		makeLayer(t, dir("etc"), file("etc/hostname", "one"), file("bin/sh", "sh"),
			file("gone.txt", "bye"), dir("data"), file("data/a", "a")),
		makeLayer(t, file("etc/hostname", "two"), file("added", "2")),
		makeLayer(t, file(".wh.gone.txt", ""), file("data/.wh..wh..opq", ""), file("data/b", "b"), file("three", "3")),
	}
}

// wantThreeLayers is the tree of threeLayers.
var wantThreeLayers = map[string]string{
	"etc": "d", "etc/hostname": "two", "bin": "d", "bin/sh": "sh",
	"added": "2", "data": "d", "data/b": "b", "three": "3",
}

// ownPlatform is the daemon's platform; otherPlatform another one.
func ownPlatform() ocispec.Platform { return platforms.Normalize(platforms.DefaultSpec()) }

func otherPlatform() ocispec.Platform {
	if runtime.GOARCH == "arm64" {
		return ocispec.Platform{OS: "linux", Architecture: "amd64"}
	}
	return ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
}

func TestPullThreeLayers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	own := ownPlatform()
	im := e.reg.addImage(t, &own, threeLayers(t)...)
	idx := e.reg.addIndex(t, platformImage{own, im})
	e.reg.tag("example.com/three:1", idx)

	img, err := e.puller.Pull(e.ctx, e.reg, "example.com/three:1")
	if err != nil {
		t.Fatal(err)
	}
	if img.Name != "example.com/three:1" || img.Target.Digest != idx.Digest || img.Target.MediaType != idx.MediaType || img.Target.Size != idx.Size {
		t.Errorf("Pull returned image %q -> %+v, want example.com/three:1 -> %s", img.Name, img.Target, idx.Digest)
	}
	got, err := e.db.Images().Get(e.ctx, "example.com/three:1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Target.Digest != idx.Digest {
		t.Errorf("image record targets %s, want the index %s", got.Target.Digest, idx.Digest)
	}

	chain := im.chain()
	wantLabels := map[digest.Digest]map[string]string{
		idx.Digest: {"containerd.io/gc.ref.content.m.0": im.manifest.Digest.String()},
		im.manifest.Digest: {
			"containerd.io/gc.ref.content.config": im.config.Digest.String(),
			"containerd.io/gc.ref.content.l.0":    im.layers[0].desc.Digest.String(),
			"containerd.io/gc.ref.content.l.1":    im.layers[1].desc.Digest.String(),
			"containerd.io/gc.ref.content.l.2":    im.layers[2].desc.Digest.String(),
		},
		im.config.Digest: {"containerd.io/gc.ref.snapshot.overlayfs": chain[2]},
	}
	for _, l := range im.layers {
		wantLabels[l.desc.Digest] = nil
	}
	for d, want := range wantLabels {
		info, err := e.db.ContentStore().Info(e.ctx, d)
		if err != nil {
			t.Errorf("Info(%s): %v", d, err)
			continue
		}
		if diff := cmp.Diff(want, info.Labels, cmpEmptyMaps); diff != "" {
			t.Errorf("labels of %s (-want +got):\n%s", d, diff)
		}
	}

	checkChain(t, e, e.ctx, chain)
	if diff := cmp.Diff(wantThreeLayers, e.readTree(e.ctx, chain[2])); diff != "" {
		t.Errorf("unpacked tree (-want +got):\n%s", diff)
	}
	e.checkClean(e.ctx)

	// What the pull wrote survives a collection: the image keeps it all.
	before := e.backendBlobs()
	e.gc()
	if after := e.backendBlobs(); len(after) != len(before) {
		t.Errorf("GC after a pull left %d of %d blobs", len(after), len(before))
	}
	checkChain(t, e, e.ctx, chain)
}

var cmpEmptyMaps = cmp.FilterValues(func(a, b map[string]string) bool { return len(a) == 0 && len(b) == 0 }, cmp.Ignore())

// checkChain checks that the namespace's snapshots are exactly chain,
// committed, each the parent of the next.
func checkChain(t *testing.T, e *env, ctx context.Context, chain []string) {
	t.Helper()
	var got []string
	for _, s := range e.snapshots(ctx) {
		got = append(got, s.Name)
	}
	want := slices.Clone(chain)
	slices.Sort(got)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("snapshots (-want +got):\n%s", diff)
	}
	parent := ""
	for _, c := range chain {
		info, err := e.sn().Stat(ctx, c)
		if err != nil {
			t.Errorf("Stat(%s): %v", c, err)
			continue
		}
		if info.Kind != snapshots.KindCommitted || info.Parent != parent {
			t.Errorf("snapshot %s is %s with parent %q, want committed with parent %q", c, info.Kind, info.Parent, parent)
		}
		parent = c
	}
}

// TestPullPlatforms checks which manifests of an index are fetched and
// which are unpacked, by platform option.
func TestPullPlatforms(t *testing.T) {
	t.Parallel()
	own, other := ownPlatform(), otherPlatform()
	tests := []struct {
		name         string
		opts         []pull.Opt
		fetch        []ocispec.Platform // manifests (and their layers) fetched
		unpack       []ocispec.Platform
		wantManifest []ocispec.Platform // gc.ref.content.m.N of the index, in order
	}{
		{name: "default", fetch: []ocispec.Platform{own}, unpack: []ocispec.Platform{own}, wantManifest: []ocispec.Platform{own}},
		{name: "own named", opts: []pull.Opt{pull.WithPlatforms(own)}, fetch: []ocispec.Platform{own}, unpack: []ocispec.Platform{own}, wantManifest: []ocispec.Platform{own}},
		// A platform named explicitly is unpacked even when it is not the
		// daemon's (as `ctr pull --platform` does).
		{name: "other named", opts: []pull.Opt{pull.WithPlatforms(other)}, fetch: []ocispec.Platform{other}, unpack: []ocispec.Platform{other}, wantManifest: []ocispec.Platform{other}},
		{name: "both named", opts: []pull.Opt{pull.WithPlatforms(other, own)}, fetch: []ocispec.Platform{own, other}, unpack: []ocispec.Platform{own, other}, wantManifest: []ocispec.Platform{other, own}},
		{name: "all", opts: []pull.Opt{pull.WithAllPlatforms()}, fetch: []ocispec.Platform{own, other}, unpack: []ocispec.Platform{own}, wantManifest: []ocispec.Platform{other, own}},
		{name: "without unpack", opts: []pull.Opt{pull.WithoutUnpack()}, fetch: []ocispec.Platform{own}, wantManifest: []ocispec.Platform{own}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ims := map[string]image{
				platforms.Format(own):   e.reg.addImage(t, &own, makeLayer(t, file("own", "own")), makeLayer(t, file("own2", "2"))),
				platforms.Format(other): e.reg.addImage(t, &other, makeLayer(t, file("other", "other"))),
			}
			// The other platform first: selection must not depend on order.
			idx := e.reg.addIndex(t, platformImage{other, ims[platforms.Format(other)]}, platformImage{own, ims[platforms.Format(own)]})
			e.reg.tag("example.com/multi:1", idx)
			e.pull("example.com/multi:1", tt.opts...)

			for _, p := range []ocispec.Platform{own, other} {
				im := ims[platforms.Format(p)]
				wantFetch := 0
				if hasPlatform(tt.fetch, p) {
					wantFetch = 1
				}
				for _, d := range append([]digest.Digest{im.manifest.Digest, im.config.Digest}, layerDigests(im)...) {
					if got := e.reg.count(d); got != wantFetch {
						t.Errorf("%s: blob %s fetched %d times, want %d", platforms.Format(p), d, got, wantFetch)
					}
				}
				_, err := e.sn().Stat(e.ctx, im.chain()[len(im.layers)-1])
				if unpacked := err == nil; unpacked != hasPlatform(tt.unpack, p) {
					t.Errorf("%s: unpacked = %v (Stat: %v), want %v", platforms.Format(p), unpacked, err, !unpacked)
				}
				info, err := e.db.ContentStore().Info(e.ctx, im.config.Digest)
				if hasPlatform(tt.fetch, p) && err != nil {
					t.Errorf("%s: config: %v", platforms.Format(p), err)
				}
				label, labelled := info.Labels["containerd.io/gc.ref.snapshot.overlayfs"]
				if labelled != hasPlatform(tt.unpack, p) || labelled && label != im.chain()[len(im.layers)-1] {
					t.Errorf("%s: config's snapshot label is %q (set: %v)", platforms.Format(p), label, labelled)
				}
			}
			info, err := e.db.ContentStore().Info(e.ctx, idx.Digest)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{}
			for i, p := range tt.wantManifest {
				want["containerd.io/gc.ref.content.m."+strconv.Itoa(i)] = ims[platforms.Format(p)].manifest.Digest.String()
			}
			if diff := cmp.Diff(want, info.Labels); diff != "" {
				t.Errorf("index labels (-want +got):\n%s", diff)
			}
			e.checkClean(e.ctx)
		})
	}
}

// TestPullAllPlatformsUnpacksBestMatch puts a platform the daemon can run,
// but not its own, first in the index: WithAllPlatforms must unpack the
// daemon's own platform, the best match, not the first that runs.
func TestPullAllPlatformsUnpacksBestMatch(t *testing.T) {
	t.Parallel()
	var compat ocispec.Platform
	switch runtime.GOARCH {
	case "amd64":
		compat = ocispec.Platform{OS: "linux", Architecture: "386"}
	case "arm64":
		compat = ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
	default:
		t.Fatalf("no compatible platform known for %s: add one to this test", runtime.GOARCH)
	}
	if !platforms.Only(platforms.DefaultSpec()).Match(compat) {
		t.Fatalf("%s does not run %s here", platforms.Format(ownPlatform()), platforms.Format(compat))
	}
	own := ownPlatform()
	for _, opts := range [][]pull.Opt{nil, {pull.WithAllPlatforms()}} {
		e := newEnv(t)
		ownIm := e.reg.addImage(t, &own, makeLayer(t, file("own", "own")))
		compatIm := e.reg.addImage(t, &compat, makeLayer(t, file("compat", "compat")))
		e.reg.tag("example.com/compat:1", e.reg.addIndex(t, platformImage{compat, compatIm}, platformImage{own, ownIm}))
		e.pull("example.com/compat:1", opts...)
		checkChain(t, e, e.ctx, ownIm.chain())
		if n := e.reg.count(compatIm.manifest.Digest); n != len(opts) {
			t.Errorf("with %d options, the compatible platform's manifest was fetched %d times", len(opts), n)
		}
	}
}

func hasPlatform(ps []ocispec.Platform, p ocispec.Platform) bool {
	return slices.ContainsFunc(ps, func(q ocispec.Platform) bool { return platforms.Format(q) == platforms.Format(p) })
}

func TestPullPlatformMissing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := otherPlatform()
	im := e.reg.addImage(t, &other, makeLayer(t, file("x", "x")))
	idx := e.reg.addIndex(t, platformImage{other, im})
	e.reg.tag("example.com/foreign:1", idx)
	_, err := e.puller.Pull(e.ctx, e.reg, "example.com/foreign:1")
	if !errdefs.IsNotFound(err) {
		t.Fatalf("Pull of an index without the daemon's platform: %v, want NotFound", err)
	}
	checkErrorNames(t, err, idx.Digest.String(), platforms.Format(ownPlatform()))
	e.checkClean(e.ctx)
}

func layerDigests(im image) []digest.Digest {
	var out []digest.Digest
	for _, l := range im.layers {
		out = append(out, l.desc.Digest)
	}
	return out
}

// TestPullAgain checks that a second pull of an image fetches nothing,
// and that a tag moved to another manifest moves the image record.
func TestPullAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	im := e.reg.addImage(t, nil, threeLayers(t)...)
	e.reg.tag("example.com/again:1", im.manifest)
	e.pull("example.com/again:1", pull.WithImageLabels(map[string]string{"a": "1"}))

	e.reg.resetCounts()
	var log progressLog
	start := time.Now()
	e.pull("example.com/again:1", pull.WithProgress(log.record))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second pull took %v", d)
	}
	if n := e.reg.totalFetches(); n != 0 {
		t.Errorf("second pull fetched %d blobs, want 0", n)
	}
	for _, l := range im.layers {
		if !log.has(l.desc.Digest, pull.StatusExists) {
			t.Errorf("layer %s: no %q report on the second pull", l.desc.Digest, pull.StatusExists)
		}
	}
	e.checkClean(e.ctx)

	// The tag moves to an image that shares the two bottom layers.
	moved := e.reg.addImage(t, nil, im.layers[0], im.layers[1], makeLayer(t, file("new", "new")))
	e.reg.tag("example.com/again:1", moved.manifest)
	e.reg.resetCounts()
	e.pull("example.com/again:1")
	for _, l := range moved.layers[:2] {
		if n := e.reg.count(l.desc.Digest); n != 0 {
			t.Errorf("shared layer %s fetched %d times, want 0", l.desc.Digest, n)
		}
	}
	if n := e.reg.count(moved.layers[2].desc.Digest); n != 1 {
		t.Errorf("new layer fetched %d times, want 1", n)
	}
	imgs, err := e.db.Images().List(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].Name != "example.com/again:1" || imgs[0].Target.Digest != moved.manifest.Digest {
		t.Fatalf("images after the tag moved: %+v, want example.com/again:1 -> %s", imgs, moved.manifest.Digest)
	}
	if imgs[0].Labels["a"] != "1" {
		t.Errorf("a pull without labels dropped the record's labels: %v", imgs[0].Labels)
	}
	if _, err := e.sn().Stat(e.ctx, moved.chain()[2]); err != nil {
		t.Errorf("new top snapshot: %v", err)
	}
	e.checkClean(e.ctx)

	// The old image's own layer is garbage now; the shared ones are not.
	e.gc()
	if _, err := e.db.ContentStore().Info(e.ctx, im.layers[2].desc.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("old top layer after GC: %v, want NotFound", err)
	}
	if _, err := e.sn().Stat(e.ctx, im.chain()[2]); !errdefs.IsNotFound(err) {
		t.Errorf("old top snapshot after GC: %v, want NotFound", err)
	}
	checkChain(t, e, e.ctx, moved.chain())
}

// TestPullOtherNamespaceFetchesNothing: a second namespace pulling an
// image the first holds takes every blob (manifest, config, layers) from
// the shared store; only the tag is resolved again.
func TestPullOtherNamespaceFetchesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	im := e.reg.addImage(t, nil, threeLayers(t)...)
	e.reg.tag("example.com/shared:1", im.manifest)
	e.pull("example.com/shared:1")
	e.reg.resetCounts()
	other := nsCtx("other")
	if _, err := e.puller.Pull(other, e.reg, "example.com/shared:1"); err != nil {
		t.Fatal(err)
	}
	if n := e.reg.totalFetches(); n != 0 {
		t.Errorf("the second namespace fetched %d blobs, want 0", n)
	}
	checkChain(t, e, other, im.chain())
	e.checkClean(other)
}

// TestPullImageName checks WithImageName and a bare manifest as root.
func TestPullImageName(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	im := e.reg.addImage(t, nil, makeLayer(t, file("x", "x")))
	e.reg.tag("example.com/named:1", im.manifest)
	img, err := e.puller.Pull(e.ctx, e.reg, "example.com/named:1", pull.WithImageName("local/name"),
		pull.WithImageLabels(map[string]string{"k": "v"}))
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.db.Images().Get(e.ctx, "local/name")
	if err != nil {
		t.Fatal(err)
	}
	if img.Name != "local/name" || got.Target.Digest != im.manifest.Digest || got.Labels["k"] != "v" {
		t.Errorf("image %+v, want local/name -> %s with label k=v", got, im.manifest.Digest)
	}
}

func TestPullUnknownSnapshotter(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	im := e.reg.addImage(t, nil, makeLayer(t, file("x", "x")))
	e.reg.tag("example.com/x:1", im.manifest)
	_, err := e.puller.Pull(e.ctx, e.reg, "example.com/x:1", pull.WithSnapshotter("nope"))
	if !errdefs.IsNotFound(err) {
		t.Fatalf("Pull with an unknown snapshotter: %v, want NotFound", err)
	}
	if e.reg.totalFetches() != 0 {
		t.Errorf("fetched blobs before failing on the snapshotter")
	}
}

// TestChainIDs checks ChainIDs against values computed by hand with
// sha256sum, per the image spec: ChainID(L0) = DiffID(L0),
// ChainID(L0|…|Ln) = sha256(ChainID(L0|…|Ln-1) + " " + DiffID(Ln)).
func TestChainIDs(t *testing.T) {
	t.Parallel()
	// DiffIDs: sha256 of "layer0\n", "layer1\n", "layer2\n" (echo layerN | sha256sum).
	d0 := digest.Digest("sha256:8d57c0cafd1416ef6b0e9233eacd7f023adca24d0eceb5410eb3379fd030b2b2")
	d1 := digest.Digest("sha256:dc14934a7f66ff36aaa4de4894679177ab787cb81d8f38ddb40f6de9cd6ba58b")
	d2 := digest.Digest("sha256:5091fe3751e44d94ca306eefc31888b877cf818a9f09a30d46cc09c32c03299a")
	tests := []struct {
		name string
		in   []digest.Digest
		want []digest.Digest
	}{
		{name: "none", in: nil, want: []digest.Digest{}},
		{name: "one", in: []digest.Digest{d0}, want: []digest.Digest{d0}},
		{
			name: "three",
			in:   []digest.Digest{d0, d1, d2},
			want: []digest.Digest{
				d0,
				// printf '%s %s' $d0 $d1 | sha256sum
				"sha256:b018d179c4c7f3aaf3d81c7e32de4d60ee97857a68165b7db8fb22c2f3baab3c",
				// printf '%s %s' sha256:b018d1…ab3c $d2 | sha256sum
				"sha256:3cd43ba513441772de42254892122b5c2129ed1dd46f1945d69fa3254a2258a8",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, images.ChainIDs(tt.in)); diff != "" {
				t.Errorf("ChainIDs (-want +got):\n%s", diff)
			}
		})
	}
}
