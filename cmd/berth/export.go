package main

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

func newExportCommand(a *app) *cobra.Command {
	var allPlatforms bool
	cmd := &cobra.Command{
		Use:   "export FILE|- NAME...",
		Short: "Write images to an OCI image layout tar",
		Long: `Write the named images to FILE, or for - to standard output, as an OCI image
layout tar: oci-layout, index.json naming each image (io.containerd.image.name and
org.opencontainers.image.ref.name annotations) and blobs/ALG/HEX holding every blob
the images reach that the content store has, for every platform.

This host's platform must be complete. Blobs of other platforms that were never
pulled are left out with a warning; with --all-platforms they are an error. FILE
is only created once the whole archive is written.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				plan, err := planExport(ctx, a, c, args[1:], allPlatforms)
				if err != nil {
					return err
				}
				return writeOutput(args[0], a.stdout, func(w io.Writer) error {
					return plan.write(ctx, c, w)
				})
			})
		},
	}
	cmd.Flags().BoolVar(&allPlatforms, "all-platforms", false, "fail unless every platform's blobs are present")
	return cmd
}

// exportPlan is what an export writes: the index and the blobs, in the
// order they were reached.
type exportPlan struct {
	index ocispec.Index
	blobs []ocispec.Descriptor
}

// planExport reads the image records and walks their content, checking
// which blobs the content store holds before a byte is written.
func planExport(ctx context.Context, a *app, c *conn, names []string, all bool) (*exportPlan, error) {
	plan := &exportPlan{index: ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}}
	w := &exportWalker{c: c, all: all, seen: map[digest.Digest]bool{}, warn: func(msg string) {
		fmt.Fprintf(a.stderr, "berth: warning: %s\n", msg)
	}}
	client := imagesapi.NewImagesClient(c.cc)
	done := map[string]bool{}
	for _, name := range names {
		if done[name] {
			continue
		}
		done[name] = true
		resp, err := client.Get(ctx, &imagesapi.GetImageRequest{Name: name})
		if err != nil {
			return nil, err
		}
		target := fromProto(resp.GetImage().GetTarget())
		if err := w.add(ctx, target, true); err != nil {
			return nil, fmt.Errorf("image %q: %w", name, err)
		}
		annotations := maps.Clone(target.Annotations)
		if annotations == nil {
			annotations = map[string]string{}
		}
		annotations[annotationImageName] = name
		delete(annotations, annotationRefName)
		if obj := refObject(name); obj != "" {
			annotations[annotationRefName] = obj
		}
		target.Annotations = annotations
		plan.index.Manifests = append(plan.index.Manifests, target)
	}
	plan.blobs = w.blobs
	return plan, nil
}

// refObject is the part of an image name after the repository, what OCI's
// ref.name annotation holds: the tag, or "@digest".
func refObject(name string) string {
	repo := name
	if _, rest, ok := strings.Cut(name, "/"); ok {
		repo = rest
	}
	i := strings.IndexAny(repo, ":@")
	if i < 0 {
		return ""
	}
	return strings.TrimPrefix(repo[i:], ":")
}

// exportWalker collects the blobs under a descriptor. Under strict
// branches (this host's platform, or all with --all-platforms) a missing
// blob is an error; under the others it is skipped with a warning.
type exportWalker struct {
	c     *conn
	all   bool
	seen  map[digest.Digest]bool
	blobs []ocispec.Descriptor
	warn  func(string)
}

func (w *exportWalker) add(ctx context.Context, d ocispec.Descriptor, strict bool) error {
	if w.seen[d.Digest] {
		return nil
	}
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("descriptor digest %q: %v: %w", d.Digest, err, errdefs.ErrInvalidArgument)
	}
	present, err := blobExists(ctx, w.c, d.Digest)
	if err != nil {
		return err
	}
	if !present {
		if strict {
			return fmt.Errorf("%s %s is not in the content store: %w", d.MediaType, d.Digest, errdefs.ErrNotFound)
		}
		w.warn(fmt.Sprintf("skipping %s %s (platform %s): not in the content store", d.MediaType, d.Digest, platformOf(d)))
		return nil
	}
	w.seen[d.Digest] = true
	w.blobs = append(w.blobs, ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size})
	switch {
	case isIndexType(d.MediaType):
		var idx ocispec.Index
		if err := readJSON(ctx, w.c, d, &idx); err != nil {
			return err
		}
		for _, m := range idx.Manifests {
			local := m.Platform == nil || platforms.Default().Match(*m.Platform)
			if err := w.add(ctx, m, strict && (w.all || local)); err != nil {
				return err
			}
		}
	case isManifestType(d.MediaType):
		var m ocispec.Manifest
		if err := readJSON(ctx, w.c, d, &m); err != nil {
			return err
		}
		for _, child := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
			if err := w.add(ctx, child, strict); err != nil {
				return err
			}
		}
	}
	return nil
}

// write writes the layout tar: oci-layout and index.json first, so that a
// reader of a stream knows the images early, then the blobs.
func (p *exportPlan) write(ctx context.Context, c *conn, out io.Writer) error {
	tw := tar.NewWriter(out)
	layout, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return err
	}
	index, err := json.Marshal(p.index)
	if err != nil {
		return err
	}
	if err := writeTarFile(tw, ocispec.ImageLayoutFile, layout); err != nil {
		return err
	}
	if err := writeTarFile(tw, ocispec.ImageIndexFile, index); err != nil {
		return err
	}
	dirs := map[string]bool{}
	for _, d := range p.blobs {
		dir := ocispec.ImageBlobsDir + "/" + d.Digest.Algorithm().String()
		if !dirs[dir] {
			dirs[dir] = true
			if err := writeTarDirs(tw, dir, len(dirs) == 1); err != nil {
				return err
			}
		}
		if err := writeTarBlob(ctx, c, tw, dir, d); err != nil {
			return err
		}
	}
	return tw.Close()
}

func writeTarFile(tw *tar.Writer, name string, b []byte) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o444, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err := tw.Write(b)
	return err
}

func writeTarDirs(tw *tar.Writer, dir string, withParent bool) error {
	if withParent {
		if err := tw.WriteHeader(&tar.Header{Name: ocispec.ImageBlobsDir + "/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
			return err
		}
	}
	return tw.WriteHeader(&tar.Header{Name: dir + "/", Mode: 0o755, Typeflag: tar.TypeDir})
}

// writeTarBlob copies a blob from the content store into the tar,
// checking its digest on the way.
func writeTarBlob(ctx context.Context, c *conn, tw *tar.Writer, dir string, d ocispec.Descriptor) error {
	hdr := &tar.Header{Name: dir + "/" + d.Digest.Encoded(), Mode: 0o444, Size: d.Size, Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	v := d.Digest.Verifier()
	n := &countingWriter{w: io.MultiWriter(tw, v)}
	if err := readContent(ctx, c, d.Digest, n); err != nil {
		return fmt.Errorf("export blob %s: %w", d.Digest, err)
	}
	if n.n != d.Size || !v.Verified() {
		return fmt.Errorf("export blob %s: content store returned %d bytes that do not match it (size %d): %w",
			d.Digest, n.n, d.Size, errdefs.ErrDataLoss)
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeOutput runs write on standard output for "-", which must not be a
// terminal, or on a temporary file renamed to name once write succeeds.
func writeOutput(name string, stdout io.Writer, write func(io.Writer) error) error {
	if name == "-" {
		if f, ok := stdout.(*os.File); ok && isTerminal(f) {
			return errors.New("refusing to write an archive to a terminal: redirect standard output or name a file")
		}
		return write(stdout)
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
