package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"github.com/berth-dev/berth/images"
	"strconv"
	"time"

	"github.com/berth-dev/berth/labels"
	"github.com/berth-dev/berth/leases"
	contentapi "github.com/containerd/containerd/api/services/content/v1"
	diffapi "github.com/containerd/containerd/api/services/diff/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// leaseExpiry is how long a lease outlives a client that died holding it,
// as with containerd's clients.
const leaseExpiry = 24 * time.Hour

// clientLease keeps what a command writes from garbage collection until the
// image records that reference it exist.
type clientLease struct {
	c  *conn
	id string
}

func newLease(ctx context.Context, c *conn, purpose string) (*clientLease, error) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	id := "berth-" + purpose + "-" + hex.EncodeToString(b)
	_, err := leasesapi.NewLeasesClient(c.cc).Create(ctx, &leasesapi.CreateRequest{
		ID:     id,
		Labels: map[string]string{labels.GCExpire: time.Now().Add(leaseExpiry).UTC().Format(time.RFC3339)},
	})
	if err != nil {
		return nil, fmt.Errorf("create lease: %w", err)
	}
	return &clientLease{c: c, id: id}, nil
}

// attach makes every object the calls of ctx create part of the lease.
func (l *clientLease) attach(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, leases.GRPCHeader, l.id)
}

// release deletes the lease, even when ctx was cancelled; with sync, the
// daemon collects what only the lease held before answering.
func (l *clientLease) release(ctx context.Context, sync bool) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	_, err := leasesapi.NewLeasesClient(l.c.cc).Delete(ctx, &leasesapi.DeleteRequest{ID: l.id, Sync: sync})
	if err != nil {
		return fmt.Errorf("release lease %s (it expires in %s): %w", l.id, leaseExpiry, err)
	}
	return nil
}

// labelTree sets containerd's garbage collection labels from each index
// and manifest under d to its children, so that an image record keeps its
// whole tree. Only this host's platform is followed unless all; a child
// followed must be in the content store.
func labelTree(ctx context.Context, c *conn, d ocispec.Descriptor, all bool, done map[string]bool) error {
	if done[d.Digest.String()] {
		return nil
	}
	done[d.Digest.String()] = true
	refs := map[string]string{}
	var children []ocispec.Descriptor
	switch {
	case isIndexType(d.MediaType):
		var idx ocispec.Index
		if err := readJSON(ctx, c, d, &idx); err != nil {
			return err
		}
		for _, m := range idx.Manifests {
			if all || m.Platform == nil || platforms.Default().Match(*m.Platform) {
				refs[labels.GCRefContent+".m."+strconv.Itoa(len(children))] = m.Digest.String()
				children = append(children, m)
			}
		}
	case isManifestType(d.MediaType):
		var m ocispec.Manifest
		if err := readJSON(ctx, c, d, &m); err != nil {
			return err
		}
		refs[labels.GCRefContent+".config"] = m.Config.Digest.String()
		children = append(children, m.Config)
		for i, l := range m.Layers {
			refs[labels.GCRefContent+".l."+strconv.Itoa(i)] = l.Digest.String()
			children = append(children, l)
		}
	default:
		return nil
	}
	for _, child := range children {
		present, err := blobExists(ctx, c, child.Digest)
		if err != nil {
			return err
		}
		if !present {
			return fmt.Errorf("%s %s (%s, platform %s) named by %s is missing: %w",
				child.MediaType, child.Digest, humanSize(child.Size), platformOf(child), d.Digest, errdefs.ErrNotFound)
		}
		if err := labelTree(ctx, c, child, all, done); err != nil {
			return err
		}
	}
	return setContentLabels(ctx, c, d.Digest, refs)
}

func setContentLabels(ctx context.Context, c *conn, dgst digest.Digest, lbls map[string]string) error {
	if len(lbls) == 0 {
		return nil
	}
	_, err := contentapi.NewContentClient(c.cc).Update(ctx, &contentapi.UpdateRequest{
		Info:       &contentapi.Info{Digest: dgst.String(), Labels: lbls},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: labelPaths(lbls)},
	})
	if err != nil {
		return fmt.Errorf("label %s: %w", dgst, err)
	}
	return nil
}

// unpackRecords unpacks this host's platform of each record's target once,
// returning the chain IDs by target digest. A target without this
// platform is noted and left packed.
func unpackRecords(ctx context.Context, a *app, c *conn, recs []importRecord, snapshotter string) (map[string]string, error) {
	byTarget := map[string]string{}
	byManifest := map[digest.Digest]digest.Digest{}
	for _, rec := range recs {
		if _, ok := byTarget[rec.target.Digest.String()]; ok {
			continue
		}
		choice, err := selectManifest(ctx, c, rec.target)
		if errdefs.IsNotFound(err) {
			fmt.Fprintf(a.stderr, "berth: %s: not unpacked: %v\n", rec.name, err)
			byTarget[rec.target.Digest.String()] = ""
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("image %q: %w", rec.name, err)
		}
		top, ok := byManifest[choice.desc.Digest]
		if !ok {
			if top, err = unpackManifest(ctx, c, choice, snapshotter); err != nil {
				return nil, fmt.Errorf("unpack %q (%s): %w", rec.name, platforms.Format(choice.platform), err)
			}
			byManifest[choice.desc.Digest] = top
		}
		byTarget[rec.target.Digest.String()] = top.String()
	}
	return byTarget, nil
}

// unpackManifest applies the layers of a manifest, bottom up, into
// snapshots named by their chain IDs, and labels the config with the top
// one so that the image keeps its snapshots. An image without layers has
// nothing to unpack and returns "".
func unpackManifest(ctx context.Context, c *conn, choice manifestChoice, snapshotter string) (digest.Digest, error) {
	var img ocispec.Image
	if err := readJSON(ctx, c, choice.manifest.Config, &img); err != nil {
		return "", err
	}
	diffIDs, layers := img.RootFS.DiffIDs, choice.manifest.Layers
	if len(layers) == 0 && len(diffIDs) == 0 {
		return "", nil // nothing to unpack
	}
	if len(diffIDs) != len(layers) {
		return "", fmt.Errorf("config %s lists %d diff_ids for %d layers: %w",
			choice.manifest.Config.Digest, len(diffIDs), len(layers), errdefs.ErrInvalidArgument)
	}
	chain := images.ChainIDs(diffIDs)
	u := &layerUnpacker{c: c, snapshotter: snapshotter}
	for i, layer := range layers {
		var parent digest.Digest
		if i > 0 {
			parent = chain[i-1]
		}
		if err := u.apply(ctx, layer, diffIDs[i], chain[i], parent); err != nil {
			return "", fmt.Errorf("layer %d of %d: %w", i+1, len(layers), err)
		}
	}
	top := chain[len(chain)-1]
	ref := map[string]string{labels.GCRefSnapshot + "." + snapshotter: top.String()}
	return top, setContentLabels(ctx, c, choice.manifest.Config.Digest, ref)
}

// layerUnpacker applies layers through the Snapshots and Diff services, as
// containerd's clients do: prepare an active snapshot on the parent, apply
// the layer onto its mounts, check the result against the diff ID, commit
// under the chain ID.
type layerUnpacker struct {
	c           *conn
	snapshotter string
}

func (u *layerUnpacker) apply(ctx context.Context, layer ocispec.Descriptor, diffID, chainID, parent digest.Digest) error {
	done, err := snapshotCommitted(ctx, u.c, u.snapshotter, chainID.String())
	if err != nil || done {
		return err
	}
	snaps := snapshotsapi.NewSnapshotsClient(u.c.cc)
	key := fmt.Sprintf("extract-%d-%s %s", time.Now().UnixNano(), randomSuffix(), chainID)
	prep, err := snaps.Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{
		Snapshotter: u.snapshotter, Key: key, Parent: parent.String(),
	})
	if err != nil {
		return fmt.Errorf("prepare snapshot for %s in %s: %w", chainID, u.snapshotter, err)
	}
	committed := false
	defer func() {
		if !committed { // an active snapshot is a GC root: remove it ourselves
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			_, _ = snaps.Remove(rctx, &snapshotsapi.RemoveSnapshotRequest{Snapshotter: u.snapshotter, Key: key})
		}
	}()
	resp, err := diffapi.NewDiffClient(u.c.cc).Apply(ctx, &diffapi.ApplyRequest{Diff: toProto(layer), Mounts: prep.GetMounts()})
	if err != nil {
		return err
	}
	if got := resp.GetApplied().GetDigest(); got != diffID.String() {
		return fmt.Errorf("layer %s unpacked to %s, but the config's diff_id is %s: %w",
			layer.Digest, got, diffID, errdefs.ErrDataLoss)
	}
	_, err = snaps.Commit(ctx, &snapshotsapi.CommitSnapshotRequest{Snapshotter: u.snapshotter, Name: chainID.String(), Key: key})
	if errdefs.IsAlreadyExists(err) {
		return nil // unpacked meanwhile by someone else
	}
	if err != nil {
		return fmt.Errorf("commit snapshot %s: %w", chainID, err)
	}
	committed = true
	return nil
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// putImages points each record's name at its target, creating the records
// that do not exist. An existing record keeps its labels.
func putImages(ctx context.Context, c *conn, recs []importRecord) ([]importedView, error) {
	client := imagesapi.NewImagesClient(c.cc)
	views := make([]importedView, 0, len(recs))
	for _, rec := range recs {
		img := &imagesapi.Image{Name: rec.name, Target: toProto(rec.target)}
		_, err := client.Update(ctx, &imagesapi.UpdateImageRequest{
			Image: img, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"target"}},
		})
		if errdefs.IsNotFound(err) {
			_, err = client.Create(ctx, &imagesapi.CreateImageRequest{Image: img})
		}
		if err != nil {
			return nil, fmt.Errorf("image %q: %w", rec.name, err)
		}
		views = append(views, importedView{
			Name: rec.name, MediaType: rec.target.MediaType, Digest: rec.target.Digest.String(),
		})
	}
	return views, nil
}
