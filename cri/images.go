package cri

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/cri/imagestore"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// imageService is runtime.v1.ImageService over cri/imagestore: it only
// converts between the CRI's messages and the store's images.
type imageService struct {
	runtime.UnimplementedImageServiceServer
	s *Service
}

// streamImagesBatch is how many images each StreamImages message holds.
const streamImagesBatch = 100

func (i *imageService) ListImages(ctx context.Context, req *runtime.ListImagesRequest) (*runtime.ListImagesResponse, error) {
	imgs, err := i.list(withNamespace(ctx), req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtime.ListImagesResponse{Images: imgs}, nil
}

func (i *imageService) StreamImages(req *runtime.StreamImagesRequest, stream grpc.ServerStreamingServer[runtime.StreamImagesResponse]) error {
	imgs, err := i.list(withNamespace(stream.Context()), req.GetFilter())
	if err != nil {
		return err
	}
	for len(imgs) > 0 {
		n := min(len(imgs), streamImagesBatch)
		if err := stream.Send(&runtime.StreamImagesResponse{Images: imgs[:n]}); err != nil {
			return err
		}
		imgs = imgs[n:]
	}
	return nil
}

// list returns every image, or only the one the filter names (none when
// it names no image).
func (i *imageService) list(ctx context.Context, filter *runtime.ImageFilter) ([]*runtime.Image, error) {
	imgs, err := i.s.images.List(ctx)
	if err != nil {
		return nil, err
	}
	if ref := filter.GetImage().GetImage(); ref != "" {
		img, err := imagestore.Lookup(imgs, ref)
		if errdefs.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list images named %q in namespace %q: %w", ref, Namespace, err)
		}
		imgs = []imagestore.Image{img}
	}
	out := make([]*runtime.Image, len(imgs))
	for n, img := range imgs {
		out[n] = criImage(img)
	}
	return out, nil
}

// ImageStatus answers with no image, and no error, when the image does
// not exist.
func (i *imageService) ImageStatus(ctx context.Context, req *runtime.ImageStatusRequest) (*runtime.ImageStatusResponse, error) {
	ref, err := imageRef(req.GetImage())
	if err != nil {
		return nil, err
	}
	img, err := i.s.images.Get(withNamespace(ctx), ref)
	if errdefs.IsNotFound(err) {
		return &runtime.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &runtime.ImageStatusResponse{Image: criImage(img)}
	if req.GetVerbose() {
		resp.Info = map[string]string{"info": mustJSON(struct {
			ChainID   string `json:"chainID"`
			ImageSpec any    `json:"imageSpec"`
		}{img.ChainID.String(), img.Spec})}
	}
	return resp, nil
}

// PullImage answers with the image ID, which is what Image.id,
// Container.image_id and ContainerStatus.image_id hold too.
func (i *imageService) PullImage(ctx context.Context, req *runtime.PullImageRequest) (*runtime.PullImageResponse, error) {
	ctx = withNamespace(ctx)
	ref, err := imageRef(req.GetImage())
	if err != nil {
		return nil, err
	}
	if h := req.GetImage().GetRuntimeHandler(); h != "" {
		if _, err := i.s.handlers.Get(h); err != nil {
			return nil, fmt.Errorf("pull image %q: %w", ref, err)
		}
	}
	r, err := i.s.registry.resolver(req.GetAuth())
	if err != nil {
		return nil, fmt.Errorf("pull image %q: %w", ref, err)
	}
	defer i.s.fsUsage.invalidate()
	img, err := i.s.images.Pull(ctx, i.s.deps.Puller, r, ref, imagestore.PullOptions{
		Snapshotter: i.s.cfg.Snapshotter,
		Concurrency: i.s.cfg.MaxConcurrentDownloads,
		Pinned:      i.s.isSandboxImage(ref),
	})
	if err != nil {
		return nil, err
	}
	return &runtime.PullImageResponse{ImageRef: img.ID.String()}, nil
}

// RemoveImage removes every reference of the image; a missing image is
// removed already.
func (i *imageService) RemoveImage(ctx context.Context, req *runtime.RemoveImageRequest) (*runtime.RemoveImageResponse, error) {
	ref, err := imageRef(req.GetImage())
	if err != nil {
		return nil, err
	}
	defer i.s.fsUsage.invalidate()
	if err := i.s.images.Remove(withNamespace(ctx), ref); err != nil {
		return nil, err
	}
	return &runtime.RemoveImageResponse{}, nil
}

// ImageFsInfo reports the snapshotter's directory, where both the images'
// layers and the containers' writable layers are.
func (i *imageService) ImageFsInfo(ctx context.Context, _ *runtime.ImageFsInfoRequest) (*runtime.ImageFsInfoResponse, error) {
	u, err := i.s.fsUsage.get()
	if err != nil {
		return nil, err
	}
	fs := &runtime.FilesystemUsage{
		Timestamp:  u.at.UnixNano(),
		FsId:       &runtime.FilesystemIdentifier{Mountpoint: i.s.fsUsage.dir},
		UsedBytes:  &runtime.UInt64Value{Value: u.bytes},
		InodesUsed: &runtime.UInt64Value{Value: u.inodes},
	}
	return &runtime.ImageFsInfoResponse{ImageFilesystems: []*runtime.FilesystemUsage{fs}, ContainerFilesystems: []*runtime.FilesystemUsage{fs}}, nil
}

func imageRef(spec *runtime.ImageSpec) (string, error) {
	if spec.GetImage() == "" {
		return "", fmt.Errorf("no image given (ImageSpec.image is empty): %w", errdefs.ErrInvalidArgument)
	}
	return spec.GetImage(), nil
}

// isSandboxImage reports whether ref names the configured sandbox image,
// which is pinned against the kubelet's image garbage collection.
func (s *Service) isSandboxImage(ref string) bool {
	a, err := imagestore.ParseRef(ref)
	if err != nil {
		return false
	}
	b, err := imagestore.ParseRef(s.cfg.SandboxImage)
	return err == nil && a.String() == b.String()
}

func criImage(img imagestore.Image) *runtime.Image {
	out := &runtime.Image{
		Id:          img.ID.String(),
		RepoTags:    img.RepoTags(),
		RepoDigests: img.RepoDigests(),
		Size:        uint64(img.Size),
		Pinned:      img.Pinned,
	}
	uid, username := img.User()
	if uid != nil {
		out.Uid = &runtime.Int64Value{Value: *uid}
	}
	out.Username = username
	return out
}
