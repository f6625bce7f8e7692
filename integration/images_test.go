package integration

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ociImage is a one-layer image and its OCI layout archive.
type ociImage struct {
	name    string
	archive string // path of the tar
	// blobs are the digests of manifest, config and layer.
	blobs []string
}

// buildOCIArchive writes an OCI image layout tar holding image name: a
// tiny layer, its config, a manifest, and index.json naming it.
func buildOCIArchive(t *testing.T, name string) ociImage {
	t.Helper()
	layer := tarOf(t, map[string]string{"hello.txt": "hello from " + name + "\n"})
	layerDesc := descriptor(ocispec.MediaTypeImageLayer, layer)
	config := mustJSON(t, ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerDesc.Digest}},
	})
	configDesc := descriptor(ocispec.MediaTypeImageConfig, config)
	manifest := mustJSON(t, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    configDesc,
		Layers:    []ocispec.Descriptor{layerDesc},
	})
	manifestDesc := descriptor(ocispec.MediaTypeImageManifest, manifest)
	manifestDesc.Annotations = map[string]string{
		"io.containerd.image.name": name,
		ocispec.AnnotationRefName:  name[strings.LastIndex(name, ":")+1:],
	}
	index := mustJSON(t, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{manifestDesc},
	})
	files := map[string]string{
		ocispec.ImageLayoutFile: `{"imageLayoutVersion":"1.0.0"}`,
		"index.json":            string(index),
	}
	for _, b := range [][]byte{layer, config, manifest} {
		files["blobs/sha256/"+digest.FromBytes(b).Encoded()] = string(b)
	}
	path := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(path, tarOf(t, files), 0o644); err != nil {
		t.Fatal(err)
	}
	return ociImage{name: name, archive: path,
		blobs: []string{manifestDesc.Digest.String(), configDesc.Digest.String(), layerDesc.Digest.String()}}
}

func descriptor(mediaType string, b []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tarOf returns a tar archive of the files, in a fixed order.
func tarOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// importImage runs ctr images import; args come before the archive.
func importImage(t *testing.T, d *daemon, ns, archive string, args ...string) {
	t.Helper()
	d.mustCtr(append(append([]string{"-n", ns, "images", "import"}, args...), archive)...)
}

// imageNames parses the NAME column of `ctr images ls`.
func imageNames(t *testing.T, out string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "REF") {
		t.Fatalf("ctr images ls printed no table:\n%s", out)
	}
	var names []string
	for _, line := range lines[1:] {
		names = append(names, strings.Fields(line)[0])
	}
	return names
}

func TestImages(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	img := buildOCIArchive(t, "example.com/berth/tiny:1")

	importImage(t, d, "one", img.archive, "--no-unpack")
	importImage(t, d, "two", img.archive, "--no-unpack")
	// ctr also stores the index it rebuilt from index.json, under its
	// lease only: the next collection removes it and keeps the image.
	d.collectGarbage()
	for _, dgst := range img.blobs {
		if !exists(d.blobPath(dgst)) {
			t.Errorf("blob %s not on disk after import and a collection", dgst)
		}
	}
	if got := d.blobFiles(); len(got) != len(img.blobs) {
		t.Errorf("blob files after importing in two namespaces = %q, want the image's %d (stored once)", got, len(img.blobs))
	}
	if got := imageNames(t, d.mustCtr("-n", "one", "images", "ls")); !slices.Equal(got, []string{img.name}) {
		t.Errorf("images ls in one = %q, want [%s]", got, img.name)
	}
	if got := imageNames(t, d.mustCtr("-n", "other", "images", "ls")); len(got) != 0 {
		t.Errorf("images ls in other = %q, want none", got)
	}
	// The import left no lease behind, and the manifest holds its children.
	if got := strings.TrimSpace(d.mustCtr("-n", "one", "leases", "ls")); strings.Contains(got, "\n") {
		t.Errorf("leases in one after import:\n%s\nwant none", got)
	}
	lbls := contentLabels(t, d.mustCtr("-n", "one", "content", "ls"))[img.blobs[0]]
	for _, child := range img.blobs[1:] {
		if !strings.Contains(lbls, "containerd.io/gc.ref.content.") || !strings.Contains(lbls, child) {
			t.Errorf("manifest labels %q lack a containerd.io/gc.ref.content label for %s", lbls, child)
		}
	}

	// Images and blobs survive a restart.
	d.stop()
	d.start()
	if got := imageNames(t, d.mustCtr("-n", "one", "images", "ls")); !slices.Equal(got, []string{img.name}) {
		t.Errorf("images ls in one after restart = %q, want [%s]", got, img.name)
	}
	for _, dgst := range img.blobs {
		if !exists(d.blobPath(dgst)) {
			t.Errorf("blob %s gone after a restart", dgst)
		}
	}

	// A tag shares the blobs: removing it keeps them.
	tag := "example.com/berth/tiny:tag"
	d.mustCtr("-n", "two", "images", "tag", img.name, tag)
	d.mustCtr("-n", "two", "images", "rm", "--sync", tag)
	for _, dgst := range img.blobs {
		if !exists(d.blobPath(dgst)) {
			t.Errorf("blob %s removed with a tag while %s uses it", dgst, img.name)
		}
	}

	d.mustCtr("-n", "one", "images", "rm", "--sync", img.name)
	if got := imageNames(t, d.mustCtr("-n", "one", "images", "ls")); len(got) != 0 {
		t.Errorf("images ls in one after rm = %q, want none", got)
	}
	if got := contentLabels(t, d.mustCtr("-n", "one", "content", "ls")); len(got) != 0 {
		t.Errorf("content of one after images rm --sync = %v, want none", got)
	}
	for _, dgst := range img.blobs {
		if !exists(d.blobPath(dgst)) {
			t.Errorf("blob %s removed while the image in namespace two uses it", dgst)
		}
	}
	d.mustCtr("-n", "two", "images", "rm", "--sync", img.name)
	if got := d.blobFiles(); len(got) != 0 {
		t.Errorf("blob files after images rm --sync in both namespaces = %v, want none", got)
	}
	if got := contentLabels(t, d.mustCtr("-n", "two", "content", "ls")); len(got) != 0 {
		t.Errorf("content of two after images rm --sync = %v, want none", got)
	}
}

// snapshotKinds parses `ctr snapshots ls` into KEY -> KIND.
func snapshotKinds(t *testing.T, out string) map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "KEY") {
		t.Fatalf("ctr snapshots ls printed no table:\n%s", out)
	}
	got := map[string]string{}
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		got[f[0]] = f[len(f)-1]
	}
	return got
}

// TestImagesUnpack imports with unpacking into the default snapshotter
// (overlayfs), in two namespaces; removing the image with --sync removes
// its blobs and its snapshot, but not those of the other namespace.
func TestImagesUnpack(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	img := buildOCIArchive(t, "example.com/berth/unpacked:1")
	layer := img.blobs[2] // uncompressed: its own diff ID and chain ID
	importImage(t, d, "u1", img.archive)
	importImage(t, d, "u2", img.archive)

	for _, ns := range []string{"u1", "u2"} {
		if got := snapshotKinds(t, d.mustCtr("-n", ns, "snapshots", "ls")); len(got) != 1 || got[layer] != "Committed" {
			t.Errorf("snapshots in %s = %v, want %s Committed", ns, got, layer)
		}
	}
	files, _ := filepath.Glob(filepath.Join(d.Root, "io.containerd.snapshotter.v1.overlayfs", "snapshots", "*", "fs", "hello.txt"))
	if len(files) == 0 {
		t.Fatalf("no unpacked hello.txt under the overlayfs snapshots")
	}
	for _, f := range files {
		if b, err := os.ReadFile(f); err != nil || string(b) != "hello from "+img.name+"\n" {
			t.Errorf("%s = %q, %v; want the layer's file", f, b, err)
		}
	}

	d.mustCtr("-n", "u1", "images", "rm", "--sync", img.name)
	if got := snapshotKinds(t, d.mustCtr("-n", "u1", "snapshots", "ls")); len(got) != 0 {
		t.Errorf("snapshots in u1 after images rm --sync = %v, want none", got)
	}
	if got := snapshotKinds(t, d.mustCtr("-n", "u2", "snapshots", "ls")); len(got) != 1 {
		t.Errorf("snapshots in u2 after the image was removed from u1 = %v, want its own", got)
	}
	for _, dgst := range img.blobs {
		if !exists(d.blobPath(dgst)) {
			t.Errorf("blob %s removed while the image in u2 uses it", dgst)
		}
	}

	d.mustCtr("-n", "u2", "images", "rm", "--sync", img.name)
	if got := snapshotKinds(t, d.mustCtr("-n", "u2", "snapshots", "ls")); len(got) != 0 {
		t.Errorf("snapshots in u2 after images rm --sync = %v, want none", got)
	}
	if got := d.blobFiles(); len(got) != 0 {
		t.Errorf("blob files after images rm --sync in both namespaces = %q, want none", got)
	}
	if dirs, _ := filepath.Glob(filepath.Join(d.Root, "io.containerd.snapshotter.v1.overlayfs", "snapshots", "*")); len(dirs) != 0 {
		t.Errorf("overlayfs snapshot directories left on disk: %q", dirs)
	}
}
