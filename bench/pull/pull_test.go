package main

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestBuildImages checks that each image is a valid OCI layout whose
// blobs match their digests and whose layers unpack to the config's diff
// IDs, and that a rebuild gives the same digests.
func TestBuildImages(t *testing.T) {
	imgs := []func() *image{
		func() *image { return bigImage(9, 2) },
		func() *image { return manyLayersImage(3) },
	}
	if _, err := os.Stat("/bin/busybox"); err == nil {
		imgs = append(imgs, func() *image { return busyboxImage("/bin/busybox") })
	}
	for _, mk := range imgs {
		img := mk()
		t.Run(img.Key, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "a")
			if err := img.build(dir); err != nil {
				t.Fatal(err)
			}
			checkLayout(t, dir, img)
			again := mk()
			if err := again.build(filepath.Join(t.TempDir(), "b")); err != nil {
				t.Fatal(err)
			}
			if again.Manifest.Digest != img.Manifest.Digest {
				t.Errorf("rebuild: manifest %s, first build %s", again.Manifest.Digest, img.Manifest.Digest)
			}
			reused := mk()
			if err := reused.build(dir); err != nil || reused.Manifest.Digest != img.Manifest.Digest {
				t.Errorf("reuse of the layout: %v, manifest %s", err, reused.Manifest.Digest)
			}
		})
	}
}

func checkLayout(t *testing.T, dir string, img *image) {
	t.Helper()
	var idx ocispec.Index
	readJSON(t, filepath.Join(dir, "index.json"), &idx)
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != img.Manifest.Digest ||
		idx.Manifests[0].Annotations[ocispec.AnnotationRefName] != img.Tag {
		t.Fatalf("index.json: %+v", idx)
	}
	var m ocispec.Manifest
	readJSON(t, blobPath(dir, img.Manifest.Digest), &m)
	var cfg ocispec.Image
	readJSON(t, blobPath(dir, m.Config.Digest), &cfg)
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) || len(m.Layers) != len(img.layers) {
		t.Fatalf("%d diff IDs, %d layers, %d built", len(cfg.RootFS.DiffIDs), len(m.Layers), len(img.layers))
	}
	var unpacked int64
	for i, l := range m.Layers {
		b, err := os.ReadFile(blobPath(dir, l.Digest))
		if err != nil {
			t.Fatal(err)
		}
		if digest.FromBytes(b) != l.Digest || int64(len(b)) != l.Size {
			t.Errorf("layer %d: blob does not match %s/%d", i, l.Digest, l.Size)
		}
		zr, err := gzip.NewReader(strings.NewReader(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, zr)
		if err != nil {
			t.Fatal(err)
		}
		unpacked += n
		if got := digest.NewDigest(digest.SHA256, h); got != cfg.RootFS.DiffIDs[i] {
			t.Errorf("layer %d unpacks to %s, config says %s", i, got, cfg.RootFS.DiffIDs[i])
		}
	}
	if unpacked != img.Unpacked {
		t.Errorf("unpacked size %d, recorded %d", unpacked, img.Unpacked)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestLayerPhases(t *testing.T) {
	lines := []timedLine{
		{100 * time.Millisecond, "resolving 127.0.0.1:5000/bench/big:1m"},
		{200 * time.Millisecond, "layer    0123456789ab  downloading 1MB / 2MB"},
		{900 * time.Millisecond, "layer    0123456789ab  done        2MB / 2MB"},
		{1200 * time.Millisecond, "layer    ba9876543210  exists      2MB / 2MB"},
		{1500 * time.Millisecond, "layer    0123456789ab  unpacked    3MB / 3MB"},
	}
	dl, up, ev := layerPhases(lines)
	if dl != 1200*time.Millisecond || up != 1500*time.Millisecond || len(ev) != 4 || ev[1] != "0.900s layer 0123456789ab done" {
		t.Errorf("got %v %v %q", dl, up, ev)
	}
}

func TestMedian(t *testing.T) {
	id := func(d time.Duration) time.Duration { return d }
	for _, c := range []struct {
		in   []time.Duration
		want time.Duration
	}{{nil, 0}, {[]time.Duration{3, 1, 2}, 2}, {[]time.Duration{4, 1, 3, 2}, 2}} {
		if got := median(c.in, id); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestDaemonConfig(t *testing.T) {
	c := daemonConfig("containerd", "/bin/containerd", "/d", []string{"io.containerd.grpc.v1.cri"}, "ignored").TOML()
	for _, want := range []string{`address = "/d/d.sock"`, `path = "/d/opt"`, `"io.containerd.grpc.v1.cri",`} {
		if !strings.Contains(c, want) {
			t.Errorf("containerd config lacks %q:\n%s", want, c)
		}
	}
	if strings.Contains(c, "ignored") {
		t.Errorf("containerd config has berthd's extra:\n%s", c)
	}
	b := daemonConfig("berthd", "/bin/berthd", "/d", []string{"x"}, `[a]\n  b = 1`).TOML()
	if !strings.Contains(b, "[a]\n  b = 1\n") || strings.Contains(b, "disabled_plugins") || strings.Contains(b, "opt") {
		t.Errorf("berthd config:\n%s", b)
	}
}
