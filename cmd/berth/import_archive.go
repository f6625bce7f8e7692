package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/berth-dev/berth/archive/compression"
	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxLinkHops bounds how many symlinks naming a file of an archive are
// followed, against loops.
const maxLinkHops = 16

// archiveBlob is a file of an archive, stored in the content store.
type archiveBlob struct {
	desc        ocispec.Descriptor // digest and size
	compression compression.Compression
}

// importArchive is what an image archive held: its small JSON files read,
// every other file written to the content store as a blob.
type importArchive struct {
	layout   []byte // oci-layout
	index    []byte // index.json
	manifest []byte // manifest.json, docker save's
	blobs    map[string]archiveBlob
	links    map[string]string // link name → what it names
}

// readArchive streams the tar r into the content store. Files under blobs/
// are checked against the digest their path names; docker save's files are
// stored under the digest they turn out to have.
func readArchive(ctx context.Context, c *conn, ref string, r io.Reader) (*importArchive, error) {
	dr, _, err := compression.DecompressStream(r)
	if err != nil {
		return nil, fmt.Errorf("read archive: %w", err)
	}
	defer dr.Close()
	arc := &importArchive{blobs: map[string]archiveBlob{}, links: map[string]string{}}
	w := &blobWriter{client: contentapi.NewContentClient(c.cc), ref: ref}
	tr := tar.NewReader(dr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w", err)
		}
		name := cleanEntry(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeReg:
			err = arc.addFile(ctx, w, name, hdr.Size, tr)
		case tar.TypeSymlink:
			arc.links[name] = cleanEntry(path.Join(path.Dir(name), hdr.Linkname))
		case tar.TypeLink:
			arc.links[name] = cleanEntry(hdr.Linkname)
		}
		if err != nil {
			return nil, fmt.Errorf("archive entry %q: %w", hdr.Name, err)
		}
	}
	return arc, nil
}

// cleanEntry makes an entry name a clean relative path, so that "./x",
// "/x" and "x" are one file.
func cleanEntry(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

func (arc *importArchive) addFile(ctx context.Context, w *blobWriter, name string, size int64, r io.Reader) error {
	var err error
	switch name {
	case ocispec.ImageLayoutFile:
		arc.layout, err = readSmall(r, size)
		return err
	case ocispec.ImageIndexFile:
		arc.index, err = readSmall(r, size)
		return err
	case "manifest.json":
		arc.manifest, err = readSmall(r, size)
		return err
	case "repositories": // docker's legacy tag file; manifest.json has the tags
		return nil
	}
	var expected digest.Digest
	if rest, ok := strings.CutPrefix(name, ocispec.ImageBlobsDir+"/"); ok {
		alg, encoded, _ := strings.Cut(rest, "/")
		expected = digest.NewDigestFromEncoded(digest.Algorithm(alg), encoded)
		if err := expected.Validate(); err != nil {
			return fmt.Errorf("not a blob path: %w", err)
		}
	}
	b, err := w.write(ctx, name, r, size, expected)
	if err != nil {
		return err
	}
	arc.blobs[name] = b
	return nil
}

func readSmall(r io.Reader, size int64) ([]byte, error) {
	if size > maxJSONBlob {
		return nil, fmt.Errorf("%d bytes, over the %d allowed: %w", size, maxJSONBlob, errdefs.ErrInvalidArgument)
	}
	return io.ReadAll(r)
}

// resolve finds the blob of an archive path, through links.
func (arc *importArchive) resolve(name string) (archiveBlob, error) {
	name = cleanEntry(name)
	for range maxLinkHops {
		if b, ok := arc.blobs[name]; ok {
			return b, nil
		}
		target, ok := arc.links[name]
		if !ok {
			return archiveBlob{}, fmt.Errorf("the archive has no file %q: %w", name, errdefs.ErrNotFound)
		}
		name = target
	}
	return archiveBlob{}, fmt.Errorf("file %q: more than %d links: %w", name, maxLinkHops, errdefs.ErrInvalidArgument)
}

// rootIndex returns the index of everything the archive holds, stored in
// the content store: index.json of an OCI layout, or one built from
// docker's manifest.json.
func (arc *importArchive) rootIndex(ctx context.Context, c *conn) (ocispec.Descriptor, ocispec.Index, error) {
	var idx ocispec.Index
	switch {
	case arc.layout != nil || arc.index != nil:
		if err := arc.checkLayout(); err != nil {
			return ocispec.Descriptor{}, idx, err
		}
		if err := json.Unmarshal(arc.index, &idx); err != nil {
			return ocispec.Descriptor{}, idx, fmt.Errorf("index.json: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		desc, err := writeBytes(ctx, c, ocispec.MediaTypeImageIndex, arc.index)
		return desc, idx, err
	case arc.manifest != nil:
		return arc.convertDocker(ctx, c)
	}
	return ocispec.Descriptor{}, idx, fmt.Errorf(
		"neither an OCI image layout (no index.json) nor a docker archive (no manifest.json): %w", errdefs.ErrInvalidArgument)
}

func (arc *importArchive) checkLayout() error {
	if arc.index == nil {
		return fmt.Errorf("OCI image layout without index.json: %w", errdefs.ErrInvalidArgument)
	}
	if arc.layout == nil {
		return nil // docker save and some tools leave it out
	}
	var l ocispec.ImageLayout
	if err := json.Unmarshal(arc.layout, &l); err != nil {
		return fmt.Errorf("oci-layout: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if l.Version != ocispec.ImageLayoutVersion {
		return fmt.Errorf("oci-layout: version %q, want %s: %w", l.Version, ocispec.ImageLayoutVersion, errdefs.ErrNotImplemented)
	}
	return nil
}

// dockerImage is one entry of docker save's manifest.json.
type dockerImage struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// convertDocker writes an OCI manifest for each image of manifest.json,
// over the config and layer blobs as they are, and an index of them all
// carrying their tags as name annotations.
func (arc *importArchive) convertDocker(ctx context.Context, c *conn) (ocispec.Descriptor, ocispec.Index, error) {
	var images []dockerImage
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	if err := json.Unmarshal(arc.manifest, &images); err != nil {
		return ocispec.Descriptor{}, idx, fmt.Errorf("manifest.json: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	for i, img := range images {
		desc, err := arc.dockerManifest(ctx, c, img)
		if err != nil {
			return ocispec.Descriptor{}, idx, fmt.Errorf("manifest.json image %d: %w", i, err)
		}
		if len(img.RepoTags) == 0 {
			idx.Manifests = append(idx.Manifests, desc)
		}
		for _, tag := range img.RepoTags {
			named, err := reference.ParseNormalizedNamed(tag)
			if err != nil {
				return ocispec.Descriptor{}, idx, fmt.Errorf("manifest.json image %d: tag %q: %v: %w", i, tag, err, errdefs.ErrInvalidArgument)
			}
			named = reference.TagNameOnly(named)
			d := desc
			d.Annotations = map[string]string{annotationImageName: named.String()}
			if tagged, ok := named.(reference.Tagged); ok {
				d.Annotations[annotationRefName] = tagged.Tag()
			}
			idx.Manifests = append(idx.Manifests, d)
		}
	}
	b, err := json.Marshal(idx)
	if err != nil {
		return ocispec.Descriptor{}, idx, err
	}
	desc, err := writeBytes(ctx, c, ocispec.MediaTypeImageIndex, b)
	return desc, idx, err
}

func (arc *importArchive) dockerManifest(ctx context.Context, c *conn, img dockerImage) (ocispec.Descriptor, error) {
	cb, err := arc.resolve(img.Config)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	config := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cb.desc.Digest, Size: cb.desc.Size}
	var spec ocispec.Image
	if err := readJSON(ctx, c, config, &spec); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("config %q: %w", img.Config, err)
	}
	if n := len(spec.RootFS.DiffIDs); n != len(img.Layers) {
		return ocispec.Descriptor{}, fmt.Errorf("config %q lists %d diff_ids for %d layers: %w",
			img.Config, n, len(img.Layers), errdefs.ErrInvalidArgument)
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: config,
	}
	for _, name := range img.Layers {
		lb, err := arc.resolve(name)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		mt, err := compression.MediaType(lb.compression)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("layer %q: %w", name, err)
		}
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: mt, Digest: lb.desc.Digest, Size: lb.desc.Size})
	}
	b, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc, err := writeBytes(ctx, c, ocispec.MediaTypeImageManifest, b)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	p := spec.Platform
	desc.Platform = &p
	return desc, nil
}

// blobWriter writes an archive's files to the content store, one ingest
// each, named after the lease and the file.
type blobWriter struct {
	client contentapi.ContentClient
	ref    string
}

// write stores r, size bytes, checking it against expected when known;
// it also reports the compression the bytes start with.
func (w *blobWriter) write(ctx context.Context, name string, r io.Reader, size int64,
	expected digest.Digest) (archiveBlob, error) {
	br := bufio.NewReader(r)
	peek, _ := br.Peek(4)
	digester := digest.Canonical.Digester()
	in := &ingestion{ref: w.ref + "/" + name, expected: expected, total: size, notes: io.Discard}
	res, err := in.run(ctx, w.client, io.TeeReader(br, digester.Hash()))
	dgst := digest.Digest(res.Digest)
	if errdefs.IsAlreadyExists(err) && expected == "" {
		// The commit found the bytes stored already, which is all we need.
		dgst, err = digester.Digest(), nil
	}
	if err != nil {
		return archiveBlob{}, err
	}
	return archiveBlob{
		desc:        ocispec.Descriptor{Digest: dgst, Size: size},
		compression: compression.DetectCompression(peek),
	}, nil
}

// writeBytes stores a blob built here, such as a converted manifest.
func writeBytes(ctx context.Context, c *conn, mediaType string, b []byte) (ocispec.Descriptor, error) {
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
	in := &ingestion{ref: "berth-" + desc.Digest.String(), expected: desc.Digest, total: desc.Size, notes: io.Discard}
	if _, err := in.run(ctx, contentapi.NewContentClient(c.cc), bytes.NewReader(b)); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("store %s %s: %w", mediaType, desc.Digest, err)
	}
	return desc, nil
}
