package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// image is one test image: built offline as an OCI layout, pushed to the
// local registry as Repo:Tag.
type image struct {
	Key  string `json:"key"` // the -images name
	Repo string `json:"repo"`
	Tag  string `json:"tag"`
	// Spec describes the content; a layout built from another spec is
	// rebuilt.
	Spec   string `json:"spec"`
	layers []func(*tar.Writer) error
	// Filled in once built.
	Layers   []ocispec.Descriptor `json:"layers"`
	Manifest ocispec.Descriptor   `json:"manifest"`
	Config   ocispec.Descriptor   `json:"config"`
	Unpacked int64                `json:"unpacked_bytes"`
}

// epoch is every entry's mtime, so that a rebuild gives the same digests.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// fileSize is the size of the big image's random files.
const fileSize = 4 << 20

// bigImage is ~mib MiB of random (incompressible) bytes in files of 4 MiB
// over n layers, each with a few small text files as well.
func bigImage(mib, n int) *image {
	img := &image{Key: "big", Repo: "bench/big", Tag: fmt.Sprintf("%dm", mib),
		Spec: fmt.Sprintf("big v1: %d MiB random in %d layers", mib, n)}
	per := int64(mib) << 20 / int64(n)
	for i := range n {
		img.layers = append(img.layers, func(tw *tar.Writer) error {
			rng := rand.New(rand.NewChaCha8(seed(i)))
			dir := fmt.Sprintf("data/l%d/", i)
			if err := addDir(tw, "data/"); err != nil {
				return err
			}
			if err := addDir(tw, dir); err != nil {
				return err
			}
			for j := 0; int64(j)*fileSize < per; j++ {
				size := min(fileSize, per-int64(j)*fileSize)
				if err := addFile(tw, fmt.Sprintf("%sf%04d.bin", dir, j), size, randomBytes(rng)); err != nil {
					return err
				}
			}
			return addTextFiles(tw, dir+"notes/", rng, 32, 16<<10)
		})
	}
	return img
}

// busyboxImage is Debian's static busybox with a few applet links.
func busyboxImage(path string) *image {
	img := &image{Key: "busybox", Repo: "bench/busybox", Tag: "latest", Spec: "busybox v1: " + path}
	img.layers = append(img.layers, func(tw *tar.Writer) error {
		for _, d := range []string{"bin/", "etc/", "root/"} {
			if err := addDir(tw, d); err != nil {
				return err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777, ModTime: epoch}); err != nil {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if err := addFile(tw, "bin/busybox", fi.Size(), f); err != nil {
			return err
		}
		for _, a := range []string{"sh", "ls", "cat", "echo", "sleep", "true"} {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: epoch}); err != nil {
				return err
			}
		}
		passwd := "root:x:0:0:root:/root:/bin/sh\n"
		return addFile(tw, "etc/passwd", int64(len(passwd)), strings.NewReader(passwd))
	})
	return img
}

// manyLayersImage is n layers of small text files; each layer after the
// first also deletes a file of the one below (a whiteout).
func manyLayersImage(n int) *image {
	img := &image{Key: "layers20", Repo: "bench/layers", Tag: fmt.Sprintf("%d", n),
		Spec: fmt.Sprintf("layers v1: %d layers of 100 small files", n)}
	for i := range n {
		img.layers = append(img.layers, func(tw *tar.Writer) error {
			rng := rand.New(rand.NewChaCha8(seed(1000 + i)))
			if err := addDir(tw, "app/"); err != nil {
				return err
			}
			if i > 0 {
				wh := fmt.Sprintf("app/l%02d/d0/.wh.t000.txt", i-1)
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: wh, Mode: 0o644, ModTime: epoch}); err != nil {
					return err
				}
			}
			base := fmt.Sprintf("app/l%02d/", i)
			if err := addDir(tw, base); err != nil {
				return err
			}
			for d := range 4 {
				if err := addTextFiles(tw, fmt.Sprintf("%sd%d/", base, d), rng, 25, 512+rng.IntN(8<<10)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return img
}

func seed(i int) [32]byte {
	var s [32]byte
	copy(s[:], fmt.Sprintf("berth bench/pull layer %d", i))
	return s
}

func addDir(tw *tar.Writer, name string) error {
	return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: epoch})
}

func addFile(tw *tar.Writer, name string, size int64, r io.Reader) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size, ModTime: epoch}); err != nil {
		return err
	}
	_, err := io.CopyN(tw, r, size)
	return err
}

// words make the text files compressible, as source and configs are.
var words = strings.Fields("berth container image layer snapshot overlay content digest manifest registry pull unpack the of and to a in is for")

// addTextFiles adds n text files of about size bytes in dir.
func addTextFiles(tw *tar.Writer, dir string, rng *rand.Rand, n, size int) error {
	if err := addDir(tw, dir); err != nil {
		return err
	}
	var b strings.Builder
	for k := range n {
		b.Reset()
		for b.Len() < size {
			b.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(12) == 0 {
				b.WriteByte('\n')
			} else {
				b.WriteByte(' ')
			}
		}
		if err := addFile(tw, fmt.Sprintf("%st%03d.txt", dir, k), int64(b.Len()), strings.NewReader(b.String())); err != nil {
			return err
		}
	}
	return nil
}

// randomBytes reads endless pseudo-random bytes from rng.
func randomBytes(rng *rand.Rand) io.Reader { return randReader{rng} }

type randReader struct{ rng *rand.Rand }

func (r randReader) Read(p []byte) (int, error) {
	i := 0
	for ; i+8 <= len(p); i += 8 {
		v := r.rng.Uint64()
		for k := range 8 {
			p[i+k] = byte(v >> (8 * k))
		}
	}
	for ; i < len(p); i++ {
		p[i] = byte(r.rng.Uint32())
	}
	return len(p), nil
}

// build writes img as an OCI layout in dir, reusing one built from the
// same spec.
func (img *image) build(dir string) error {
	stamp := filepath.Join(dir, "bench-image.json")
	if b, err := os.ReadFile(stamp); err == nil {
		var old image
		if json.Unmarshal(b, &old) == nil && old.Spec == img.Spec {
			img.Layers, img.Manifest, img.Config, img.Unpacked = old.Layers, old.Manifest, old.Config, old.Unpacked
			return nil
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return err
	}
	diffIDs := make([]digest.Digest, len(img.layers))
	img.Layers = make([]ocispec.Descriptor, len(img.layers))
	sizes := make([]int64, len(img.layers))
	errs := make([]error, len(img.layers))
	sem := make(chan struct{}, runtime.NumCPU())
	var wg sync.WaitGroup
	for i, fill := range img.layers {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			img.Layers[i], diffIDs[i], sizes[i], errs[i] = writeLayer(blobs, fill)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("image %s: %w", img.Key, err)
	}
	for _, s := range sizes {
		img.Unpacked += s
	}
	if err := img.writeMeta(dir, blobs, diffIDs); err != nil {
		return err
	}
	b, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(stamp, b, 0o644)
}

// writeLayer writes one gzip layer blob into blobs and returns its
// descriptor, diff ID and uncompressed size.
func writeLayer(blobs string, fill func(*tar.Writer) error) (ocispec.Descriptor, digest.Digest, int64, error) {
	f, err := os.CreateTemp(blobs, ".layer-")
	if err != nil {
		return ocispec.Descriptor{}, "", 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	comp := sha256.New()
	cw := &counter{w: io.MultiWriter(f, comp)}
	gz, err := gzip.NewWriterLevel(cw, gzip.DefaultCompression)
	if err != nil {
		return ocispec.Descriptor{}, "", 0, err
	}
	diff := sha256.New()
	uw := &counter{w: io.MultiWriter(gz, diff)}
	tw := tar.NewWriter(uw)
	if err := fill(tw); err != nil {
		return ocispec.Descriptor{}, "", 0, err
	}
	if err := tw.Close(); err != nil {
		return ocispec.Descriptor{}, "", 0, err
	}
	if err := gz.Close(); err != nil {
		return ocispec.Descriptor{}, "", 0, err
	}
	desc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageLayerGzip,
		Digest:    digest.NewDigest(digest.SHA256, comp),
		Size:      cw.n,
	}
	if err := f.Close(); err != nil {
		return ocispec.Descriptor{}, "", 0, err
	}
	if err := os.Rename(f.Name(), filepath.Join(blobs, desc.Digest.Encoded())); err != nil {
		return ocispec.Descriptor{}, "", 0, err
	}
	return desc, digest.NewDigest(digest.SHA256, diff), uw.n, nil
}

type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeMeta writes the config, manifest, index.json and oci-layout.
func (img *image) writeMeta(dir, blobs string, diffIDs []digest.Digest) error {
	cfg := ocispec.Image{
		Created:  &epoch,
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config:   ocispec.ImageConfig{Cmd: []string{"/bin/sh"}},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	}
	var err error
	if img.Config, err = writeJSONBlob(blobs, ocispec.MediaTypeImageConfig, cfg); err != nil {
		return err
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    img.Config,
		Layers:    img.Layers,
	}
	if img.Manifest, err = writeJSONBlob(blobs, ocispec.MediaTypeImageManifest, m); err != nil {
		return err
	}
	ref := img.Manifest
	ref.Annotations = map[string]string{ocispec.AnnotationRefName: img.Tag}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{ref}}
	b, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, ocispec.ImageIndexFile), b, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ocispec.ImageLayoutFile), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}

func writeJSONBlob(blobs, mediaType string, v any) (ocispec.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
	return d, os.WriteFile(filepath.Join(blobs, d.Digest.Encoded()), b, 0o644)
}

// blobPath is where a blob of img lies in its layout dir.
func blobPath(layout string, d digest.Digest) string {
	return filepath.Join(layout, "blobs", "sha256", d.Encoded())
}
