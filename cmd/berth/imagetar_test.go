package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"github.com/berth-dev/berth/images"
	"runtime"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// tarEntry is one file of a test tar; a Typeflag of 0 is a regular file,
// a name ending in "/" a directory.
type tarEntry struct {
	name     string
	body     string
	typeflag byte
	linkname string
}

func buildTar(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: e.typeflag, Linkname: e.linkname}
		switch {
		case e.typeflag == tar.TypeSymlink:
			hdr.Size = 0
		case e.typeflag == 0 && len(e.name) > 0 && e.name[len(e.name)-1] == '/':
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		case e.typeflag == 0:
			hdr.Typeflag = tar.TypeReg
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testLayer is a layer as stored (blob) and as unpacked (diff).
type testLayer struct {
	blob      []byte
	diff      []byte
	mediaType string
}

func (l testLayer) desc() ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: l.mediaType, Digest: digest.FromBytes(l.blob), Size: int64(len(l.blob))}
}

func plainLayer(diff []byte) testLayer {
	return testLayer{blob: diff, diff: diff, mediaType: ocispec.MediaTypeImageLayer}
}

func gzipLayer(t *testing.T, diff []byte) testLayer {
	return testLayer{blob: gzipBytes(t, diff), diff: diff, mediaType: ocispec.MediaTypeImageLayerGzip}
}

// testImage is an image of this host's platform built in memory.
type testImage struct {
	arch     string
	layers   []testLayer
	config   []byte
	manifest []byte
}

func newTestImage(t *testing.T, layers ...testLayer) testImage {
	t.Helper()
	return newTestImageFor(t, runtime.GOARCH, layers...)
}

// newTestImageFor builds an image for linux on arch.
func newTestImageFor(t *testing.T, arch string, layers ...testLayer) testImage {
	t.Helper()
	img := testImage{layers: layers, arch: arch}
	cfg := ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: arch},
		RootFS:   ocispec.RootFS{Type: "layers"},
	}
	for _, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, digest.FromBytes(l.diff))
	}
	img.config = mustJSON(t, cfg)
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(img.config), Size: int64(len(img.config))},
	}
	for _, l := range layers {
		m.Layers = append(m.Layers, l.desc())
	}
	img.manifest = mustJSON(t, m)
	return img
}

func (img testImage) manifestDesc() ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(img.manifest), Size: int64(len(img.manifest))}
}

// size is what `images ls` shows: config and layers.
func (img testImage) size() int64 {
	n := int64(len(img.config))
	for _, l := range img.layers {
		n += int64(len(l.blob))
	}
	return n
}

func (img testImage) chainIDs() []digest.Digest {
	var ids []digest.Digest
	for _, l := range img.layers {
		ids = append(ids, digest.FromBytes(l.diff))
	}
	return images.ChainIDs(ids)
}

// ociArchive is an OCI image layout tar of img, named name in index.json.
func (img testImage) ociArchive(t *testing.T, name string) []byte {
	t.Helper()
	desc := img.manifestDesc()
	desc.Annotations = map[string]string{annotationImageName: name, annotationRefName: refObject(name)}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{desc}}
	entries := []tarEntry{
		{name: "oci-layout", body: `{"imageLayoutVersion":"1.0.0"}`},
		{name: "blobs/"}, {name: "blobs/sha256/"},
		blobEntry(img.manifest), blobEntry(img.config),
	}
	for _, l := range img.layers {
		entries = append(entries, blobEntry(l.blob))
	}
	// index.json last, as some writers do, so the importer must wait for it.
	entries = append(entries, tarEntry{name: "index.json", body: string(mustJSON(t, idx))})
	return buildTar(t, entries...)
}

// indexArchive is an OCI image layout tar whose index.json names one
// index, name, over a manifest per image, each with its platform.
func indexArchive(t *testing.T, name string, imgs ...testImage) ([]byte, ocispec.Descriptor) {
	t.Helper()
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	entries := []tarEntry{{name: "oci-layout", body: `{"imageLayoutVersion":"1.0.0"}`}}
	for _, img := range imgs {
		d := img.manifestDesc()
		d.Platform = &ocispec.Platform{OS: "linux", Architecture: img.arch}
		idx.Manifests = append(idx.Manifests, d)
		entries = append(entries, blobEntry(img.manifest), blobEntry(img.config))
		for _, l := range img.layers {
			entries = append(entries, blobEntry(l.blob))
		}
	}
	ib := mustJSON(t, idx)
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(ib), Size: int64(len(ib)),
		Annotations: map[string]string{annotationImageName: name}}
	top := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: []ocispec.Descriptor{desc}}
	entries = append(entries, blobEntry(ib), tarEntry{name: "index.json", body: string(mustJSON(t, top))})
	desc.Annotations = nil
	return buildTar(t, entries...), desc
}

func blobEntry(b []byte) tarEntry {
	return tarEntry{name: "blobs/sha256/" + digest.FromBytes(b).Encoded(), body: string(b)}
}

// dockerArchive is img as docker save writes it: uncompressed layer.tar
// files, the second reached through a symlink, a config named by its hex
// and manifest.json with the tag.
func (img testImage) dockerArchive(t *testing.T, tag string) []byte {
	t.Helper()
	configName := digest.FromBytes(img.config).Encoded() + ".json"
	entries := []tarEntry{{name: configName, body: string(img.config)}, {name: "repositories", body: "{}"}}
	var layerPaths []string
	for i, l := range img.layers {
		dir := digest.FromBytes([]byte{byte(i)}).Encoded()
		entries = append(entries, tarEntry{name: dir + "/"}, tarEntry{name: dir + "/VERSION", body: "1.0"})
		if i == 1 {
			entries = append(entries, tarEntry{name: dir + "/layer.tar", typeflag: tar.TypeSymlink, linkname: "../shared/layer.tar"},
				tarEntry{name: "shared/layer.tar", body: string(l.diff)})
		} else {
			entries = append(entries, tarEntry{name: dir + "/layer.tar", body: string(l.diff)})
		}
		layerPaths = append(layerPaths, dir+"/layer.tar")
	}
	manifest := []dockerImage{{Config: configName, RepoTags: []string{tag}, Layers: layerPaths}}
	entries = append(entries, tarEntry{name: "manifest.json", body: string(mustJSON(t, manifest))})
	return buildTar(t, entries...)
}
