// Command mkimage builds berth's demo image offline: an OCI image layout
// whose one layer is Debian's busybox-static with its common applets as
// symlinks, a root user and a shell as the default command. `make demo`
// pushes it to a local registry and pulls it through berthd.
//
//	go run ./demo/mkimage -busybox /bin/busybox -out DIR -tag latest
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// applets become /bin/NAME -> busybox.
var applets = []string{"sh", "ls", "cat", "echo", "sleep", "uname", "ps", "id", "hostname", "mount", "df", "env", "true", "false", "top", "wget", "vi", "grep", "head", "tail", "httpd", "ip"}

func main() {
	busybox := flag.String("busybox", "/bin/busybox", "statically linked busybox to put in the image")
	out := flag.String("out", "demo-image", "OCI image layout directory to write")
	tag := flag.String("tag", "latest", "tag in index.json")
	flag.Parse()
	if err := build(*busybox, *out, *tag); err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: %v\n", err)
		os.Exit(1)
	}
}

func build(busybox, out, tag string) error {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("read busybox (apt-get install busybox-static): %w", err)
	}
	tarball, err := layerTar(bin)
	if err != nil {
		return err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(tarball); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(out, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	layer, err := writeBlob(out, ocispec.MediaTypeImageLayerGzip, gz.Bytes())
	if err != nil {
		return err
	}
	created := time.Unix(0, 0).UTC()
	cfg := ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config:   ocispec.ImageConfig{Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/bin"}, WorkingDir: "/"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.Digest(fmt.Sprintf("sha256:%x", sha256.Sum256(tarball)))}},
	}
	config, err := writeJSON(out, ocispec.MediaTypeImageConfig, cfg)
	if err != nil {
		return err
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: config, Layers: []ocispec.Descriptor{layer}}
	manifest, err := writeJSON(out, ocispec.MediaTypeImageManifest, m)
	if err != nil {
		return err
	}
	manifest.Platform = &cfg.Platform
	manifest.Annotations = map[string]string{ocispec.AnnotationRefName: tag}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{manifest}}
	b, _ := json.Marshal(idx)
	if err := os.WriteFile(filepath.Join(out, "index.json"), b, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, ocispec.ImageLayoutFile), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}

func layerTar(bin []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	add := func(h *tar.Header, data []byte) error {
		h.ModTime, h.Format = epoch, tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev", "root"} {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		if err := add(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode}, nil); err != nil {
			return nil, err
		}
	}
	if err := add(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bin))}, bin); err != nil {
		return nil, err
	}
	for _, a := range applets {
		if err := add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777}, nil); err != nil {
			return nil, err
		}
	}
	passwd := []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
	group := []byte("root:x:0:\nnogroup:x:65534:\n")
	for name, data := range map[string][]byte{"etc/passwd": passwd, "etc/group": group} {
		if err := add(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data))}, data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeJSON(out, mediaType string, v any) (ocispec.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return writeBlob(out, mediaType, b)
}

func writeBlob(out, mediaType string, b []byte) (ocispec.Descriptor, error) {
	d := digest.FromBytes(b)
	if err := os.WriteFile(filepath.Join(out, "blobs", "sha256", d.Encoded()), b, 0o644); err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}, nil
}
