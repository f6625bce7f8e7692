package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

type importOptions struct {
	baseName     string
	indexName    string
	snapshotter  string
	noUnpack     bool
	allPlatforms bool
}

// importedView is one image record an import created or updated.
type importedView struct {
	Name      string `json:"name"`
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	// Unpacked is the chain ID of this host's platform, unpacked into
	// Snapshotter; empty when it was not unpacked.
	Unpacked    string `json:"unpacked,omitempty"`
	Snapshotter string `json:"snapshotter,omitempty"`
}

func newImportCommand(a *app) *cobra.Command {
	var o importOptions
	cmd := &cobra.Command{
		Use:   "import FILE|-",
		Short: "Import images from an OCI image layout tar or a docker save archive",
		Long: `Import the images of an archive, read from FILE or, for -, standard input; the
archive may be gzip or zstd compressed. Either format works:

  OCI image layout  oci-layout, index.json and blobs/ALG/HEX, as berth image export
                    and ctr export write it
  docker archive    manifest.json, image configs and layer tars, as docker save
                    writes it; it is converted to OCI manifests, as ctr does

The blobs are written to berthd's content store under a lease, then each image is
unpacked into --snapshotter for this host's platform, then the image records are
created or pointed at the new content. Only then is the lease let go: an import
that fails leaves no image record, blob or snapshot behind.

Image names come from the index's io.containerd.image.name annotations, or from
org.opencontainers.image.ref.name ones: a bare tag gets the --base-name (default
import-YYYY-MM-DD) prefix, and with --base-name a full reference is kept only if
it starts with it. --index-name names the whole archive's index too.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, closeInput, err := openInput(args[0], a.stdin)
			if err != nil {
				return err
			}
			defer closeInput()
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				views, err := runImport(ctx, a, c, r, o)
				if err != nil {
					return fmt.Errorf("import %s: %w", args[0], err)
				}
				return a.out().print(views, func(w io.Writer) error {
					t := newTable("NAME", "DIGEST", "UNPACKED")
					for _, v := range views {
						t.add(v.Name, v.Digest, dash(v.Unpacked))
					}
					return t.write(w)
				})
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.baseName, "base-name", "", "name prefix for bare tags, and the only prefix full names may have")
	f.StringVar(&o.indexName, "index-name", "", "also name the archive's index with this image name")
	f.StringVar(&o.snapshotter, "snapshotter", "overlayfs", "snapshotter to unpack into")
	f.BoolVar(&o.noUnpack, "no-unpack", false, "store the content and the records, but do not unpack")
	f.BoolVar(&o.allPlatforms, "all-platforms", false,
		"keep every platform of the archive (by default only this host's is referenced, the rest collected)")
	return cmd
}

// openInput opens FILE, or standard input for "-".
func openInput(name string, stdin io.Reader) (io.Reader, func(), error) {
	if name == "-" {
		if stdin == nil {
			return nil, nil, errors.New("no standard input to read the archive from")
		}
		return stdin, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

// importRecord is an image record an import will write.
type importRecord struct {
	name   string
	target ocispec.Descriptor
}

// importNames picks the image records of an archive's root index as ctr
// does: the containerd name annotation as is, an OCI ref name translated by
// refName, and --index-name for the index itself.
func importNames(root ocispec.Descriptor, idx ocispec.Index, o importOptions, now time.Time) []importRecord {
	var recs []importRecord
	add := func(name string, target ocispec.Descriptor) {
		for i := range recs {
			if recs[i].name == name { // as containerd: the last one wins
				recs[i].target = target
				return
			}
		}
		recs = append(recs, importRecord{name: name, target: target})
	}
	if o.indexName != "" {
		add(o.indexName, root)
	}
	for _, m := range idx.Manifests {
		name := m.Annotations[annotationImageName]
		if name == "" {
			name = refName(m.Annotations[annotationRefName], o.baseName, now)
		}
		if name != "" {
			add(name, m)
		}
	}
	return recs
}

// refName turns an org.opencontainers.image.ref.name into an image name:
// a bare tag is prefixed with base (or import-DATE), and a full reference is
// kept when no base is given or when it starts with base.
func refName(ref, base string, now time.Time) string {
	if ref == "" {
		return ""
	}
	if strings.ContainsAny(ref, "/:@") {
		if base != "" && !hasImagePrefix(ref, base) {
			return ""
		}
		return ref
	}
	if base == "" {
		base = "import-" + now.Format("2006-01-02")
	}
	return base + ":" + ref
}

// hasImagePrefix reports whether s is prefix or prefix followed by a path,
// tag or digest, not merely a longer name.
func hasImagePrefix(s, prefix string) bool {
	if !strings.HasPrefix(s, prefix) {
		return false
	}
	if len(s) > len(prefix) {
		switch s[len(prefix)] {
		case '/', ':', '@':
		default:
			return false
		}
	}
	return true
}

// runImport stores the archive's blobs and image records, unpacking what
// this host runs, all under one lease released at the end.
func runImport(ctx context.Context, a *app, c *conn, r io.Reader, o importOptions) ([]importedView, error) {
	lease, err := newLease(ctx, c, "import")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		// A failed import waits for the collection of what it wrote.
		if err := lease.release(ctx, !ok); err != nil {
			fmt.Fprintf(a.stderr, "berth: warning: %v\n", err)
		}
	}()
	ctx = lease.attach(ctx)
	arc, err := readArchive(ctx, c, lease.id, r)
	if err != nil {
		return nil, err
	}
	root, idx, err := arc.rootIndex(ctx, c)
	if err != nil {
		return nil, err
	}
	recs := importNames(root, idx, o, time.Now())
	if len(recs) == 0 {
		return nil, fmt.Errorf("the archive names no image (no %s or %s annotation, no RepoTags): give --index-name: %w",
			annotationImageName, annotationRefName, errdefs.ErrInvalidArgument)
	}
	if err := labelTree(ctx, c, root, o.allPlatforms, map[string]bool{}); err != nil {
		return nil, err
	}
	unpacked := map[string]string{} // target digest → chain ID
	if !o.noUnpack {
		if unpacked, err = unpackRecords(ctx, a, c, recs, o.snapshotter); err != nil {
			return nil, err
		}
	}
	views, err := putImages(ctx, c, recs)
	if err != nil {
		return nil, err
	}
	for i := range views {
		if id := unpacked[views[i].Digest]; id != "" {
			views[i].Unpacked, views[i].Snapshotter = id, o.snapshotter
		}
	}
	ok = true
	return views, nil
}
