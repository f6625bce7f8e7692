package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/berth-dev/berth/images"
	"io"
	"maps"
	"slices"
	"time"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

// imageInspectView is an image record with what its content store holds
// for it: one entry per manifest, whether fetched or not.
type imageInspectView struct {
	Name        string            `json:"name"`
	Target      descriptorView    `json:"target"`
	CreatedAt   time.Time         `json:"createdAt,omitzero"`
	UpdatedAt   time.Time         `json:"updatedAt,omitzero"`
	Labels      map[string]string `json:"labels,omitempty"`
	Snapshotter string            `json:"snapshotter"`
	Manifests   []manifestView    `json:"manifests"`
	// TotalSize counts each blob of the image held in the content store
	// once: indexes, manifests, configs and layers of every platform.
	TotalSize int64 `json:"totalSize"`
}

type descriptorView struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

func newDescriptorView(d ocispec.Descriptor) descriptorView {
	return descriptorView{MediaType: d.MediaType, Digest: d.Digest.String(), Size: d.Size}
}

// manifestView is one platform of an image. Present says whether the
// manifest blob is in the content store; without it nothing more is known.
type manifestView struct {
	descriptorView
	Platform string          `json:"platform"`
	Present  bool            `json:"present"`
	Config   *descriptorView `json:"config,omitempty"`
	Layers   []layerView     `json:"layers,omitempty"`
	// Size is the config's and the layers' sizes, what `images ls` shows.
	Size     int64  `json:"size,omitempty"`
	ChainID  string `json:"chainID,omitempty"`
	Unpacked bool   `json:"unpacked"`
}

type layerView struct {
	descriptorView
	DiffID  string `json:"diffID,omitempty"`
	Present bool   `json:"present"`
}

func newImageInspectCommand(a *app) *cobra.Command {
	var snapshotter string
	cmd := &cobra.Command{
		Use:   "inspect NAME...",
		Short: "Show images with their platforms, layers, sizes and unpacked state",
		Long: `Show each image record with the index, manifests and configs read from the
content store: every platform, its layers and their sizes, and whether the
platform is unpacked, that is whether the snapshotter holds the snapshot named by
the chain ID of its layers.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, names []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				if err := checkSnapshotter(ctx, c, snapshotter); err != nil {
					return err
				}
				views := make([]imageInspectView, 0, len(names))
				for _, name := range names {
					v, err := inspectImage(ctx, c, name, snapshotter)
					if err != nil {
						return err
					}
					views = append(views, v)
				}
				return a.out().print(views, func(w io.Writer) error { return writeInspect(w, views) })
			})
		},
	}
	cmd.Flags().StringVar(&snapshotter, "snapshotter", "overlayfs", "snapshotter to look for unpacked platforms in")
	return cmd
}

func inspectImage(ctx context.Context, c *conn, name, snapshotter string) (imageInspectView, error) {
	resp, err := imagesapi.NewImagesClient(c.cc).Get(ctx, &imagesapi.GetImageRequest{Name: name})
	if err != nil {
		return imageInspectView{}, err
	}
	img := resp.GetImage()
	target := fromProto(img.GetTarget())
	in := &inspector{c: c, snapshotter: snapshotter, seen: map[digest.Digest]bool{}}
	v := imageInspectView{
		Name: img.GetName(), Target: newDescriptorView(target), Labels: img.GetLabels(),
		CreatedAt: asTime(img.GetCreatedAt()), UpdatedAt: asTime(img.GetUpdatedAt()),
		Snapshotter: snapshotter, Manifests: []manifestView{},
	}
	if err := in.visit(ctx, target, &v); err != nil {
		return imageInspectView{}, fmt.Errorf("image %q: %w", name, err)
	}
	return v, nil
}

// inspector walks an image's content into an imageInspectView.
type inspector struct {
	c           *conn
	snapshotter string
	seen        map[digest.Digest]bool
}

// count adds a present blob to the total once.
func (in *inspector) count(v *imageInspectView, d ocispec.Descriptor) {
	if !in.seen[d.Digest] {
		in.seen[d.Digest] = true
		v.TotalSize += d.Size
	}
}

func (in *inspector) visit(ctx context.Context, d ocispec.Descriptor, v *imageInspectView) error {
	switch {
	case isIndexType(d.MediaType):
		var idx ocispec.Index
		if err := readJSON(ctx, in.c, d, &idx); err != nil {
			return err
		}
		in.count(v, d)
		for _, child := range idx.Manifests {
			if err := in.visit(ctx, child, v); err != nil {
				return err
			}
		}
		return nil
	case isManifestType(d.MediaType):
		mv, err := in.manifest(ctx, d, v)
		if err != nil {
			return err
		}
		v.Manifests = append(v.Manifests, mv)
		return nil
	}
	return fmt.Errorf("blob %s has media type %q, neither an index nor a manifest: %w",
		d.Digest, d.MediaType, errdefs.ErrNotImplemented)
}

func (in *inspector) manifest(ctx context.Context, d ocispec.Descriptor, v *imageInspectView) (manifestView, error) {
	mv := manifestView{descriptorView: newDescriptorView(d), Platform: platformOf(d)}
	var m ocispec.Manifest
	if err := readJSON(ctx, in.c, d, &m); errdefs.IsNotFound(err) {
		return mv, nil // a platform that was not fetched
	} else if err != nil {
		return mv, err
	}
	mv.Present = true
	in.count(v, d)
	config := newDescriptorView(m.Config)
	mv.Config, mv.Size = &config, manifestSize(m)
	var img ocispec.Image
	if err := readJSON(ctx, in.c, m.Config, &img); err == nil {
		in.count(v, m.Config)
		if d.Platform == nil {
			mv.Platform = platforms.Format(platforms.Normalize(img.Platform))
		}
	} else if !errdefs.IsNotFound(err) {
		return mv, err
	}
	for i, l := range m.Layers {
		lv := layerView{descriptorView: newDescriptorView(l)}
		if i < len(img.RootFS.DiffIDs) {
			lv.DiffID = img.RootFS.DiffIDs[i].String()
		}
		present, err := blobExists(ctx, in.c, l.Digest)
		if err != nil {
			return mv, err
		}
		if lv.Present = present; present {
			in.count(v, l)
		}
		mv.Layers = append(mv.Layers, lv)
	}
	if ids := img.RootFS.DiffIDs; len(ids) > 0 && len(ids) == len(m.Layers) {
		mv.ChainID = images.ChainIDs(ids)[len(ids)-1].String()
		unpacked, err := snapshotCommitted(ctx, in.c, in.snapshotter, mv.ChainID)
		if err != nil {
			return mv, err
		}
		mv.Unpacked = unpacked
	}
	return mv, nil
}

// snapshotCommitted reports whether the snapshotter holds key as a committed
// snapshot, which is how an unpacked layer stack is recorded.
func snapshotCommitted(ctx context.Context, c *conn, snapshotter, key string) (bool, error) {
	resp, err := snapshotsapi.NewSnapshotsClient(c.cc).Stat(ctx,
		&snapshotsapi.StatSnapshotRequest{Snapshotter: snapshotter, Key: key})
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("snapshot %s in %s: %w", key, snapshotter, err)
	}
	return resp.GetInfo().GetKind() == snapshotsapi.Kind_COMMITTED, nil
}

// checkSnapshotter fails unless the daemon has the snapshotter, so that a
// misspelt --snapshotter is not read as "nothing unpacked".
func checkSnapshotter(ctx context.Context, c *conn, name string) error {
	stream, err := snapshotsapi.NewSnapshotsClient(c.cc).List(ctx, &snapshotsapi.ListSnapshotsRequest{
		Snapshotter: name, Filters: []string{`name=="berth: no snapshot has this name"`},
	})
	if err == nil {
		_, err = stream.Recv()
	}
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	return fmt.Errorf("--snapshotter %q: %w", name, err)
}

func writeInspect(w io.Writer, views []imageInspectView) error {
	var sections []*section
	for _, v := range views {
		s := &section{title: "Image " + v.Name}
		s.add("Type", v.Target.MediaType)
		s.add("Digest", v.Target.Digest)
		s.add("Created", formatTime(v.CreatedAt))
		s.add("Updated", formatTime(v.UpdatedAt))
		s.add("Labels", formatLabels(v.Labels))
		s.add("Total size", humanSize(v.TotalSize))
		sections = append(sections, s)
		for _, m := range v.Manifests {
			sections = append(sections, manifestSection(m, v.Snapshotter))
		}
	}
	return writeSections(w, sections...)
}

func manifestSection(m manifestView, snapshotter string) *section {
	s := &section{title: "Platform " + m.Platform}
	s.add("Manifest", m.Digest)
	if !m.Present {
		s.add("Present", "no (the content store lacks this manifest)")
		return s
	}
	s.add("Config", fmt.Sprintf("%s %s", m.Config.Digest, humanSize(m.Config.Size)))
	for i, l := range m.Layers {
		missing := ""
		if !l.Present {
			missing = " (missing)"
		}
		s.add(fmt.Sprintf("Layer %d", i+1), fmt.Sprintf("%s %s %s%s", l.Digest, humanSize(l.Size), l.MediaType, missing))
	}
	s.add("Size", humanSize(m.Size))
	s.add("Chain ID", dash(m.ChainID))
	s.add("Unpacked", fmt.Sprintf("%t (%s)", m.Unpacked, snapshotter))
	return s
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.RFC3339)
}

// imageSummary is what `images ls` shows of an image's content: the size of
// its manifest for this host's platform and the platforms it offers. Either
// is empty when the content store lacks the blobs to tell.
func imageSummary(ctx context.Context, c *conn, target ocispec.Descriptor) (int64, []string, error) {
	var size int64
	choice, err := selectManifest(ctx, c, target)
	switch {
	case err == nil:
		size = manifestSize(choice.manifest)
	case !tolerable(err):
		return 0, nil, err
	}
	set := map[string]bool{}
	if err := collectPlatforms(ctx, c, target, set); err != nil && !tolerable(err) {
		return 0, nil, err
	}
	return size, slices.Sorted(maps.Keys(set)), nil
}

// tolerable are the errors that leave a listing's cell empty: content
// missing or not understood, rather than a daemon gone.
func tolerable(err error) bool {
	return errdefs.IsNotFound(err) || errdefs.IsInvalidArgument(err) ||
		errdefs.IsNotImplemented(err) || errdefs.IsDataLoss(err)
}

// collectPlatforms adds target's platforms to set as ctr finds them: an
// index's children by their descriptors, a manifest by its config.
func collectPlatforms(ctx context.Context, c *conn, target ocispec.Descriptor, set map[string]bool) error {
	if target.Platform != nil {
		set[platforms.Format(platforms.Normalize(*target.Platform))] = true
		return nil
	}
	switch {
	case isIndexType(target.MediaType):
		var idx ocispec.Index
		if err := readJSON(ctx, c, target, &idx); err != nil {
			return err
		}
		for _, child := range idx.Manifests {
			if err := collectPlatforms(ctx, c, child, set); err != nil && !tolerable(err) {
				return err
			}
		}
	case isManifestType(target.MediaType):
		var m ocispec.Manifest
		if err := readJSON(ctx, c, target, &m); err != nil {
			return err
		}
		p, err := configPlatform(ctx, c, m.Config)
		if err != nil {
			return err
		}
		set[platforms.Format(p)] = true
	}
	return nil
}
