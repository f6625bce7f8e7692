package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/berth-dev/berth/images"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// runImage is what run needs of an image.
type runImage struct {
	name   string
	config ocispec.ImageConfig
	// chainID names the committed snapshot of its layers in the
	// snapshotter; "" for an image without layers.
	chainID string
}

// resolveRunImage finds the image ref names in the namespace, pulling it
// as pull says (missing, always, never), and unpacks it if it is not.
func resolveRunImage(ctx context.Context, a *app, c *conn, ref, pull string) (runImage, error) {
	name, err := imageName(ref)
	if err != nil {
		return runImage{}, err
	}
	target, err := getImage(ctx, c, name)
	switch {
	case err == nil && pull != "always":
	case err == nil || errdefs.IsNotFound(err):
		if pull == "never" {
			return runImage{}, fmt.Errorf("image %q is not in namespace %q: pull it (berth pull %s) or drop --pull never: %w",
				name, a.opts.namespace, name, errdefs.ErrNotFound)
		}
		if err := pullForRun(ctx, a, c, name); err != nil {
			return runImage{}, fmt.Errorf("pull image %q: %w", name, err)
		}
		if target, err = getImage(ctx, c, name); err != nil {
			return runImage{}, err
		}
	default:
		return runImage{}, err
	}
	return readRunImage(ctx, c, name, target)
}

// imageName is ref in full, as docker reads it: busybox is
// docker.io/library/busybox:latest.
func imageName(ref string) (string, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	return named.String(), nil
}

func getImage(ctx context.Context, c *conn, name string) (ocispec.Descriptor, error) {
	resp, err := imagesapi.NewImagesClient(c.cc).Get(ctx, &imagesapi.GetImageRequest{Name: name})
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("image %q: %w", name, err)
	}
	return fromProto(resp.GetImage().GetTarget()), nil
}

// pullForRun pulls with the pull command's code, its progress on stderr
// so that stdout keeps only the container's output (or ID, with -d).
func pullForRun(ctx context.Context, a *app, c *conn, name string) error {
	progress := *a
	progress.stdout = a.stderr
	return runPull(ctx, &progress, c, name, pullOptions{snapshotter: defaultSnapshotter})
}

// readRunImage reads the config of the image's manifest for this host and
// makes sure its layers are unpacked.
func readRunImage(ctx context.Context, c *conn, name string, target ocispec.Descriptor) (runImage, error) {
	choice, err := selectManifest(ctx, c, target)
	if err != nil {
		return runImage{}, fmt.Errorf("image %q: %w", name, err)
	}
	var img ocispec.Image
	if err := readJSON(ctx, c, choice.manifest.Config, &img); err != nil {
		return runImage{}, fmt.Errorf("config of image %q: %w", name, err)
	}
	ri := runImage{name: name, config: img.Config}
	if len(img.RootFS.DiffIDs) == 0 {
		return ri, nil
	}
	chain := images.ChainIDs(img.RootFS.DiffIDs)
	ri.chainID = chain[len(chain)-1].String()
	unpacked, err := snapshotCommitted(ctx, c, defaultSnapshotter, ri.chainID)
	if err != nil {
		return runImage{}, fmt.Errorf("image %q: %w", name, err)
	}
	if !unpacked {
		if err := unpackForRun(ctx, c, choice); err != nil {
			return runImage{}, fmt.Errorf("unpack image %q: %w", name, err)
		}
	}
	return ri, nil
}

// unpackForRun unpacks an image's layers under a lease, which keeps the
// snapshots until the image's config references the top one.
func unpackForRun(ctx context.Context, c *conn, choice manifestChoice) (err error) {
	lease, err := newLease(ctx, c, "unpack")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, lease.release(ctx, false)) }()
	_, err = unpackManifest(lease.attach(ctx), c, choice, defaultSnapshotter)
	return err
}

// checkCommand fails when nothing would run: no command after the image,
// and neither an entrypoint nor a Cmd in it.
func checkCommand(img runImage, ro runOptions, args []string) error {
	if len(args) > 0 || (ro.entrypointSet && ro.entrypoint != "") {
		return nil
	}
	if !ro.entrypointSet && len(img.config.Entrypoint)+len(img.config.Cmd) > 0 {
		return nil
	}
	if ro.entrypointSet {
		return fmt.Errorf("--entrypoint \"\" leaves no command to run: give one after the image name: %w", errdefs.ErrInvalidArgument)
	}
	return fmt.Errorf("image %s has no command: give one after the image name: %w", img.name, errdefs.ErrInvalidArgument)
}
