package cri

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/labels"
	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/snapshots"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Image volumes (KEP-4639): a CRI mount naming an image instead of a host
// path gets that image's file system, read-only. The image must have been
// pulled (the kubelet pulls it first). At CreateContainer each gets a view
// snapshot of the image, <container ID>-volume-<n>, mounted on the host at
// <root>/volumes/<container ID>/<n>; the container bind-mounts it, or its
// image_sub_path, read-only. RemoveContainer unmounts and removes them.
// The views are gc roots for as long as they exist (made outside a lease).

// isImageVolume reports whether the CRI mount is an image volume.
func isImageVolume(m *runtime.Mount) bool {
	return m.GetImage().GetImage() != ""
}

// resolveImageVolumes checks the config's image volumes and returns a copy
// of the config whose image volumes carry the image's ID in image_ref,
// which ContainerStatus then reports. A config without them is returned
// as it is.
func (s *Service) resolveImageVolumes(ctx context.Context, cfg *runtime.ContainerConfig) (*runtime.ContainerConfig, error) {
	if !hasImageVolume(cfg) {
		return cfg, nil
	}
	cfg = proto.Clone(cfg).(*runtime.ContainerConfig)
	for _, m := range cfg.GetMounts() {
		if !isImageVolume(m) {
			continue
		}
		if !m.GetReadonly() {
			return nil, fmt.Errorf("image volume %q at %s: must be read-only: %w", m.GetImage().GetImage(), m.GetContainerPath(), errdefs.ErrInvalidArgument)
		}
		if _, err := imageSubPath(m); err != nil {
			return nil, err
		}
		img, err := s.images.Get(ctx, m.GetImage().GetImage())
		if err != nil {
			return nil, fmt.Errorf("image volume at %s: %w", m.GetContainerPath(), err)
		}
		m.Image.ImageRef = img.ID.String()
	}
	return cfg, nil
}

func hasImageVolume(cfg *runtime.ContainerConfig) bool {
	for _, m := range cfg.GetMounts() {
		if isImageVolume(m) {
			return true
		}
	}
	return false
}

// imageSubPath is the mount's image_sub_path, cleaned; it must stay
// inside the image.
func imageSubPath(m *runtime.Mount) (string, error) {
	sub := m.GetImageSubPath()
	if sub == "" {
		return "", nil
	}
	clean := filepath.Clean(sub)
	if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("image volume %q at %s: sub path %q leaves the image: %w", m.GetImage().GetImage(), m.GetContainerPath(), sub, errdefs.ErrInvalidArgument)
	}
	return clean, nil
}

func (s *Service) imageVolumesDir(id string) string {
	return filepath.Join(s.deps.Root, "volumes", id)
}

func imageVolumeKey(id string, n int) string {
	return id + "-volume-" + strconv.Itoa(n)
}

// mountImageVolumes mounts container id's image volumes on the host and
// returns their bind mounts by container path. u undoes it on failure.
func (s *Service) mountImageVolumes(ctx context.Context, id string, cfg *runtime.ContainerConfig, u *undo) (map[string]specs.Mount, error) {
	if !hasImageVolume(cfg) {
		return nil, nil
	}
	u.add(func(ctx context.Context) { s.releaseImageVolumes(ctx, id) })
	out := map[string]specs.Mount{}
	for n, m := range cfg.GetMounts() {
		if !isImageVolume(m) {
			continue
		}
		root, err := s.mountImageVolume(ctx, id, n, m)
		if err != nil {
			return nil, fmt.Errorf("image volume %q at %s: %w", m.GetImage().GetImage(), m.GetContainerPath(), err)
		}
		sub, err := imageSubPath(m)
		if err != nil {
			return nil, err
		}
		src := filepath.Join(root, sub)
		if err := insideDir(root, src); err != nil {
			return nil, fmt.Errorf("image volume %q at %s: sub path %q: %w", m.GetImage().GetImage(), m.GetContainerPath(), sub, err)
		}
		out[filepath.Clean(m.GetContainerPath())] = specs.Mount{Destination: m.GetContainerPath(), Type: "bind", Source: src,
			Options: []string{"rbind", "rprivate", "ro"}}
	}
	return out, nil
}

// insideDir checks that path exists and, its links resolved, stays in root.
func insideDir(root, path string) error {
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("not in the image: %w", errdefs.ErrNotFound)
	}
	if resolved != root && !strings.HasPrefix(resolved, root+"/") {
		return fmt.Errorf("resolves outside the image: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// mountImageVolume makes the view of mount n's image and mounts it on the
// host; it returns the mount point.
func (s *Service) mountImageVolume(ctx context.Context, id string, n int, m *runtime.Mount) (string, error) {
	img, err := s.images.Get(ctx, m.GetImage().GetImage())
	if err != nil {
		return "", err
	}
	target := filepath.Join(s.imageVolumesDir(id), strconv.Itoa(n))
	if err := os.MkdirAll(target, 0o700); err != nil {
		return "", err
	}
	key := imageVolumeKey(id, n)
	mounts, err := s.deps.Snapshotter.View(ctx, key, img.ChainID.String(),
		snapshots.WithLabels(map[string]string{"containerd.io/snapshot.ref": key, labels.GCRoot: time.Now().UTC().Format(time.RFC3339)}))
	if err != nil {
		return "", fmt.Errorf("view snapshot %q of image %s: %w", key, img.ID, err)
	}
	if err := mount.All(mounts, target); err != nil {
		return "", fmt.Errorf("mount view %q on %s: %w", key, target, err)
	}
	return filepath.EvalSymlinks(target)
}

// releaseImageVolumes unmounts container id's image volumes and removes
// their views; what is not there is skipped.
func (s *Service) releaseImageVolumes(ctx context.Context, id string) {
	dir := s.imageVolumesDir(id)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target := filepath.Join(dir, e.Name())
		if err := mount.UnmountAll(target, unix.MNT_DETACH); err != nil {
			log.G(ctx).Warn("CRI: unmount image volume", "id", id, "path", target, "error", err)
			return // never remove what may still be the image's files
		}
		if err := s.deps.Snapshotter.Remove(ctx, imageVolumeKey(id, n)); err != nil && !errdefs.IsNotFound(err) {
			log.G(ctx).Warn("CRI: remove image volume snapshot", "id", id, "key", imageVolumeKey(id, n), "error", err)
		}
		if err := os.Remove(target); err != nil {
			log.G(ctx).Warn("CRI: remove image volume mount point", "id", id, "path", target, "error", err)
		}
	}
	_ = os.Remove(dir)
}
