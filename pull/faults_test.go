package pull_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/snapshots"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const faultRef = "example.com/fault:1"

// broken is what a fault case set up: the pull of faultRef fails until
// fix runs, after which it pulls good.
type broken struct {
	good image
	// bad is the blob the error must name; names are more strings it must
	// hold.
	bad   digest.Digest
	names []string
	// unpacked is how many of good's layers may be unpacked when the pull
	// fails: none of the others, nor anything else, may be committed.
	unpacked int
	// badLayer: bad is a layer that failed verification, so the content
	// store must not have it.
	badLayer bool
	fix      func()
}

// goodImage tags faultRef to a three-layer image and returns it.
func goodImage(t *testing.T, e *env) image {
	im := e.reg.addImage(t, nil, threeLayers(t)...)
	e.reg.tag(faultRef, im.manifest)
	return im
}

// layerFault serves layer 1 of a good image with fault f.
func layerFault(f func(blob []byte) *fault, names ...string) func(*testing.T, *env) broken {
	return func(t *testing.T, e *env) broken {
		im := goodImage(t, e)
		l := im.layers[1]
		e.reg.setFault(l.desc.Digest, f(l.blob))
		return broken{good: im, bad: l.desc.Digest, names: names, unpacked: 1, badLayer: true,
			fix: func() { e.reg.setFault(l.desc.Digest, nil) }}
	}
}

// retag tags faultRef to the manifest bad and returns a fix that
// retags it to the good image.
func retag(e *env, good image, bad ocispec.Descriptor) func() {
	e.reg.tag(faultRef, bad)
	return func() { e.reg.tag(faultRef, good.manifest) }
}

// rawManifest stores m as a manifest and returns its descriptor.
func rawManifest(t *testing.T, e *env, m ocispec.Manifest) ocispec.Descriptor {
	m.SchemaVersion = 2
	m.MediaType = ocispec.MediaTypeImageManifest
	b := mustJSON(t, m)
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: e.reg.put(b), Size: int64(len(b))}
}

func manifestOf(im image) ocispec.Manifest {
	m := ocispec.Manifest{Config: im.config}
	for _, l := range im.layers {
		m.Layers = append(m.Layers, l.desc)
	}
	return m
}

var faultCases = []struct {
	name  string
	setup func(*testing.T, *env) broken
}{
	{"layer bytes corrupted", layerFault(func(b []byte) *fault {
		c := bytes.Clone(b)
		c[len(c)/2] ^= 0xff
		return &fault{body: c}
	})},
	{"layer bytes of another valid layer", func(t *testing.T, e *env) broken {
		other := makeLayer(t, file("etc/hostname", "TWO"), file("added", "2"))
		return layerFault(func([]byte) *fault { return &fault{body: other.blob} })(t, e)
	}},
	{"layer truncated", layerFault(func(b []byte) *fault { return &fault{body: b[:len(b)-7]} })},
	{"layer with bytes after its end", layerFault(func(b []byte) *fault {
		return &fault{body: append(bytes.Clone(b), "trailing"...)}
	}, "more than")},
	{"layer body fails mid-stream", layerFault(func(b []byte) *fault { return &fault{failAt: int64(len(b) / 2), chunk: 16} },
		errReset.Error())},
	{"manifest not JSON", func(t *testing.T, e *env) broken {
		im := goodImage(t, e)
		b := []byte(`{"schemaVersion": 2, "config": `)
		bad := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: e.reg.put(b), Size: int64(len(b))}
		return broken{good: im, bad: bad.Digest, names: []string{"malformed JSON"}, fix: retag(e, im, bad)}
	}},
	{"manifest bytes do not match the tag's digest", func(t *testing.T, e *env) broken {
		im := goodImage(t, e)
		e.reg.setFault(im.manifest.Digest, &fault{body: bytes.Repeat([]byte("x"), int(im.manifest.Size))})
		return broken{good: im, bad: im.manifest.Digest, fix: func() { e.reg.setFault(im.manifest.Digest, nil) }}
	}},
	{"manifest with an invalid config digest", func(t *testing.T, e *env) broken {
		im := goodImage(t, e)
		m := manifestOf(im)
		m.Config.Digest = "sha256:0123"
		bad := rawManifest(t, e, m)
		return broken{good: im, bad: bad.Digest, names: []string{"config digest"}, fix: retag(e, im, bad)}
	}},
	{"manifest naming a config the registry lacks", func(t *testing.T, e *env) broken {
		im := goodImage(t, e)
		m := manifestOf(im)
		m.Config.Digest = digest.FromString("no such config")
		bad := rawManifest(t, e, m)
		return broken{good: im, bad: m.Config.Digest, fix: retag(e, im, bad)}
	}},
	{"config bytes do not match its digest", func(t *testing.T, e *env) broken {
		im := goodImage(t, e)
		e.reg.setFault(im.config.Digest, &fault{body: bytes.Repeat([]byte("{"), int(im.config.Size))})
		return broken{good: im, bad: im.config.Digest, fix: func() { e.reg.setFault(im.config.Digest, nil) }}
	}},
	{"config diff_id does not match the layer", func(t *testing.T, e *env) broken {
		im := goodImage(t, e)
		ids := im.diffIDs()
		ids[1] = digest.FromString("not the layer")
		cfg := mustJSON(t, ocispec.Image{RootFS: ocispec.RootFS{Type: "layers", DiffIDs: ids}})
		bad := e.reg.addImageWithConfig(t, cfg, im.layers...)
		return broken{good: im, bad: im.layers[1].desc.Digest, names: []string{"diff_id", ids[1].String()},
			unpacked: 1, fix: retag(e, im, bad.manifest)}
	}},
	{"config with fewer diff_ids than layers", func(t *testing.T, e *env) broken {
		im := goodImage(t, e)
		cfg := mustJSON(t, ocispec.Image{RootFS: ocispec.RootFS{Type: "layers", DiffIDs: im.diffIDs()[:2]}})
		bad := e.reg.addImageWithConfig(t, cfg, im.layers...)
		return broken{good: im, bad: bad.config.Digest, names: []string{"diff_ids"}, fix: retag(e, im, bad.manifest)}
	}},
	{"layer escaping the root", func(t *testing.T, e *env) broken {
		im := goodImage(t, e)
		evil := makeLayer(t, file("fine", "fine"), file("../etc/passwd", "evil::0:0::/:/bin/sh\n"))
		bad := e.reg.addImage(t, nil, im.layers[0], evil, im.layers[2])
		return broken{good: im, bad: evil.desc.Digest, names: []string{"../etc/passwd"}, unpacked: 1,
			fix: retag(e, im, bad.manifest)}
	}},
	{"layer of an unknown media type", func(t *testing.T, e *env) broken {
		im := goodImage(t, e)
		m := manifestOf(im)
		m.Layers[1].MediaType = "application/vnd.example.layer.v1+lz4"
		bad := rawManifest(t, e, m)
		return broken{good: im, bad: im.layers[1].desc.Digest, names: []string{"application/vnd.example.layer.v1+lz4"},
			unpacked: 1, fix: retag(e, im, bad)}
	}},
	{"encrypted layer", func(t *testing.T, e *env) broken {
		im := goodImage(t, e)
		m := manifestOf(im)
		m.Layers[2].MediaType = ocispec.MediaTypeImageLayerGzip + "+encrypted"
		bad := rawManifest(t, e, m)
		return broken{good: im, bad: im.layers[2].desc.Digest, names: []string{"encrypted"},
			unpacked: 2, fix: retag(e, im, bad)}
	}},
	{"schema 1 manifest", func(t *testing.T, e *env) broken {
		im := goodImage(t, e)
		b := []byte(`{"schemaVersion": 1, "name": "x", "tag": "1", "fsLayers": []}`)
		bad := ocispec.Descriptor{MediaType: "application/vnd.docker.distribution.manifest.v1+prettyjws", Digest: e.reg.put(b), Size: int64(len(b))}
		return broken{good: im, bad: bad.Digest, names: []string{"schema 1"}, fix: retag(e, im, bad)}
	}},
	{"root of an unknown media type", func(t *testing.T, e *env) broken {
		im := goodImage(t, e)
		bad := im.manifest
		bad.MediaType = "application/octet-stream"
		return broken{good: im, bad: bad.Digest, names: []string{"application/octet-stream"}, fix: retag(e, im, bad)}
	}},
}

// TestPullFaults checks that each fault fails the pull with an error
// naming the blob, leaves nothing unverified behind, and that the pull
// succeeds once the fault is gone.
func TestPullFaults(t *testing.T) {
	t.Parallel()
	passwd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after the parallel subtests
		if now, err := os.ReadFile("/etc/passwd"); err != nil || !bytes.Equal(now, passwd) {
			t.Errorf("/etc/passwd changed during the tests (%v)", err)
		}
	})
	for _, tc := range faultCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			b := tc.setup(t, e)
			_, err := e.puller.Pull(e.ctx, e.reg, faultRef)
			checkErrorNames(t, err, append([]string{b.bad.String()}, b.names...)...)
			t.Logf("error: %v", err)

			if b.badLayer {
				if _, err := e.db.ContentStore().Info(e.ctx, b.bad); !errdefs.IsNotFound(err) {
					t.Errorf("Info of the bad layer: %v, want NotFound", err)
				}
				if _, err := e.backend.Info(context.Background(), b.bad); !errdefs.IsNotFound(err) {
					t.Errorf("backend Info of the bad layer: %v, want NotFound", err)
				}
			}
			allowed := b.good.chain()[:b.unpacked]
			for _, s := range e.snapshots(e.ctx) {
				if !slices.Contains(allowed, s.Name) {
					t.Errorf("snapshot %s (%s) left by the failed pull; only %v may be", s.Name, s.Kind, allowed)
				}
			}
			if _, err := e.db.Images().Get(e.ctx, faultRef); !errdefs.IsNotFound(err) {
				t.Errorf("image record after the failed pull: %v, want NotFound", err)
			}
			e.checkClean(e.ctx)
			checkNothingOutside(t, e.root)

			b.fix()
			e.pull(faultRef)
			checkChain(t, e, e.ctx, b.good.chain())
			if diffs := treeDiff(wantThreeLayers, e.readTree(e.ctx, b.good.chain()[2])); diffs != "" {
				t.Errorf("tree after the retry: %s", diffs)
			}
			e.checkClean(e.ctx)

			// What the failed pull left is garbage; the image is not.
			e.gc()
			if st, err := e.backend.ListStatuses(context.Background()); err != nil || len(st) != 0 {
				t.Errorf("ingests after GC: %v, %v", st, err)
			}
			keep := append(layerDigests(b.good), b.good.manifest.Digest, b.good.config.Digest)
			for _, d := range e.backendBlobs() {
				if !slices.Contains(keep, d) {
					t.Errorf("blob %s of the failed pull survived GC", d)
				}
			}
			checkChain(t, e, e.ctx, b.good.chain())
		})
	}
}

// checkNothingOutside checks that no file named passwd exists anywhere
// under root: the escaping layer's entry was written nowhere.
func checkNothingOutside(t *testing.T, root string) {
	t.Helper()
	_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Name() == "passwd" {
			t.Errorf("%s exists", p)
		}
		return nil
	})
}

// treeDiff returns "" when got equals want, else a description.
func treeDiff(want, got map[string]string) string {
	var out []string
	for k, v := range want {
		if got[k] != v {
			out = append(out, k+": got "+got[k]+", want "+v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			out = append(out, k+": unexpected")
		}
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// TestPullCancel cancels a pull while a layer is half downloaded.
func TestPullCancel(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	im := goodImage(t, e)
	f, reached, release := gated(im.layers[1].desc.Size / 2)
	defer release()
	e.reg.setFault(im.layers[1].desc.Digest, f)

	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := e.puller.Pull(ctx, e.reg, faultRef)
		errc <- err
	}()
	wait(t, "layer 1 to be half downloaded", reached)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Pull: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Pull did not return within 10 s of its cancellation (a stalled download holds it)")
	}
	e.checkClean(e.ctx)
	if _, err := e.db.Images().Get(e.ctx, faultRef); !errdefs.IsNotFound(err) {
		t.Errorf("image record after a cancelled pull: %v", err)
	}

	e.gc()
	if blobs := e.backendBlobs(); len(blobs) != 0 {
		t.Errorf("blobs after GC: %v, want none", blobs)
	}
	if st, err := e.backend.ListStatuses(context.Background()); err != nil || len(st) != 0 {
		t.Errorf("ingests after GC: %v, %v", st, err)
	}
	if s := e.snapshots(e.ctx); len(s) != 0 {
		t.Errorf("snapshots after GC: %v", s)
	}
	var backend []string
	_ = e.overlay.Walk(context.Background(), func(_ context.Context, info snapshots.Info) error {
		backend = append(backend, info.Name)
		return nil
	})
	if len(backend) != 0 {
		t.Errorf("overlay snapshots after GC: %v", backend)
	}

	release()
	e.reg.setFault(im.layers[1].desc.Digest, nil)
	e.pull(faultRef)
	checkChain(t, e, e.ctx, im.chain())
	e.checkClean(e.ctx)
}
