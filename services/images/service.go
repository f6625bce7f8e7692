// Package images serves containerd.services.images.v1.Images over an
// images.Store.
package images

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/images"
	api "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Service is the gRPC service.
type Service struct {
	api.UnimplementedImagesServer
	store images.Store
}

// New returns the service over store.
func New(store images.Store) *Service { return &Service{store: store} }

// Register adds the service to s.
func (s *Service) Register(srv *grpc.Server) { api.RegisterImagesServer(srv, s) }

func (s *Service) Get(ctx context.Context, req *api.GetImageRequest) (*api.GetImageResponse, error) {
	img, err := s.store.Get(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	return &api.GetImageResponse{Image: ToProto(img)}, nil
}

func (s *Service) List(ctx context.Context, req *api.ListImagesRequest) (*api.ListImagesResponse, error) {
	imgs, err := s.store.List(ctx, req.Filters...)
	if err != nil {
		return nil, err
	}
	resp := &api.ListImagesResponse{}
	for _, img := range imgs {
		resp.Images = append(resp.Images, ToProto(img))
	}
	return resp, nil
}

func (s *Service) Create(ctx context.Context, req *api.CreateImageRequest) (*api.CreateImageResponse, error) {
	if req.Image == nil || req.Image.Name == "" {
		return nil, fmt.Errorf("create image: name is required: %w", errdefs.ErrInvalidArgument)
	}
	img, err := s.store.Create(ctx, FromProto(req.Image))
	if err != nil {
		return nil, err
	}
	return &api.CreateImageResponse{Image: ToProto(img)}, nil
}

func (s *Service) Update(ctx context.Context, req *api.UpdateImageRequest) (*api.UpdateImageResponse, error) {
	if req.Image == nil {
		return nil, fmt.Errorf("update image: image is required: %w", errdefs.ErrInvalidArgument)
	}
	img, err := s.store.Update(ctx, FromProto(req.Image), req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, err
	}
	return &api.UpdateImageResponse{Image: ToProto(img)}, nil
}

func (s *Service) Delete(ctx context.Context, req *api.DeleteImageRequest) (*emptypb.Empty, error) {
	if req.Target != nil {
		img, err := s.store.Get(ctx, req.Name)
		if err != nil {
			return nil, err
		}
		if img.Target.Digest.String() != req.Target.Digest {
			return nil, fmt.Errorf("image %q points at %s, not %s: %w", req.Name, img.Target.Digest, req.Target.Digest, errdefs.ErrFailedPrecondition)
		}
	}
	var opts []images.DeleteOpt
	if req.Sync {
		opts = append(opts, images.SynchronousDelete())
	}
	return &emptypb.Empty{}, s.store.Delete(ctx, req.Name, opts...)
}

// ToProto converts an image record to its API form.
func ToProto(img images.Image) *api.Image {
	return &api.Image{
		Name:   img.Name,
		Labels: img.Labels,
		Target: &types.Descriptor{
			MediaType:   img.Target.MediaType,
			Digest:      img.Target.Digest.String(),
			Size:        img.Target.Size,
			Annotations: img.Target.Annotations,
		},
		CreatedAt: timestamppb.New(img.CreatedAt),
		UpdatedAt: timestamppb.New(img.UpdatedAt),
	}
}

// FromProto converts an API image to a record.
func FromProto(p *api.Image) images.Image {
	img := images.Image{Name: p.Name, Labels: p.Labels}
	if t := p.Target; t != nil {
		img.Target = ocispec.Descriptor{MediaType: t.MediaType, Digest: digest.Digest(t.Digest), Size: t.Size, Annotations: t.Annotations}
	}
	return img
}
