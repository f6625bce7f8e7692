// Package containers serves containerd.services.containers.v1.Containers
// over a containers.Store. The Any fields (spec, runtime options,
// extensions) pass through unchanged in both directions.
package containers

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/containers"
	api "github.com/containerd/containerd/api/services/containers/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Service is the gRPC service.
type Service struct {
	api.UnimplementedContainersServer
	store containers.Store
}

// New returns the service over store.
func New(store containers.Store) *Service { return &Service{store: store} }

// Register adds the service to s.
func (s *Service) Register(srv *grpc.Server) { api.RegisterContainersServer(srv, s) }

func (s *Service) Get(ctx context.Context, req *api.GetContainerRequest) (*api.GetContainerResponse, error) {
	c, err := s.store.Get(ctx, req.ID)
	if err != nil {
		return nil, err
	}
	return &api.GetContainerResponse{Container: ToProto(c)}, nil
}

func (s *Service) List(ctx context.Context, req *api.ListContainersRequest) (*api.ListContainersResponse, error) {
	cs, err := s.store.List(ctx, req.Filters...)
	if err != nil {
		return nil, err
	}
	resp := &api.ListContainersResponse{}
	for _, c := range cs {
		resp.Containers = append(resp.Containers, ToProto(c))
	}
	return resp, nil
}

// ListStream sends one container per message (the message holds one), so
// that no response grows past the gRPC size limit however many containers
// there are; clients (ctr) prefer it to List for that reason.
func (s *Service) ListStream(req *api.ListContainersRequest, stream api.Containers_ListStreamServer) error {
	cs, err := s.store.List(stream.Context(), req.Filters...)
	if err != nil {
		return err
	}
	for _, c := range cs {
		if err := stream.Send(&api.ListContainerMessage{Container: ToProto(c)}); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) Create(ctx context.Context, req *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
	if req.Container == nil {
		return nil, fmt.Errorf("create container: container is required: %w", errdefs.ErrInvalidArgument)
	}
	c, err := s.store.Create(ctx, FromProto(req.Container))
	if err != nil {
		return nil, err
	}
	return &api.CreateContainerResponse{Container: ToProto(c)}, nil
}

func (s *Service) Update(ctx context.Context, req *api.UpdateContainerRequest) (*api.UpdateContainerResponse, error) {
	if req.Container == nil || req.Container.ID == "" {
		return nil, fmt.Errorf("update container: container ID is required: %w", errdefs.ErrInvalidArgument)
	}
	c, err := s.store.Update(ctx, FromProto(req.Container), req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, err
	}
	return &api.UpdateContainerResponse{Container: ToProto(c)}, nil
}

func (s *Service) Delete(ctx context.Context, req *api.DeleteContainerRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, s.store.Delete(ctx, req.ID)
}

// ToProto converts a container record to its API form.
func ToProto(c containers.Container) *api.Container {
	p := &api.Container{
		ID:     c.ID,
		Labels: c.Labels,
		Image:  c.Image,
		Runtime: &api.Container_Runtime{
			Name:    c.Runtime.Name,
			Options: typeurl.MarshalProto(c.Runtime.Options),
		},
		Spec:        typeurl.MarshalProto(c.Spec),
		Snapshotter: c.Snapshotter,
		SnapshotKey: c.SnapshotKey,
		CreatedAt:   timestamppb.New(c.CreatedAt),
		UpdatedAt:   timestamppb.New(c.UpdatedAt),
		Sandbox:     c.SandboxID,
	}
	if len(c.Extensions) > 0 {
		p.Extensions = make(map[string]*anypb.Any, len(c.Extensions))
		for k, v := range c.Extensions {
			p.Extensions[k] = typeurl.MarshalProto(v)
		}
	}
	return p
}

// FromProto converts an API container to a record. Unset Any fields
// become nil interfaces, not interfaces holding a nil pointer, so that the
// store sees them as missing.
func FromProto(p *api.Container) containers.Container {
	c := containers.Container{
		ID:          p.ID,
		Labels:      p.Labels,
		Image:       p.Image,
		Spec:        anyOrNil(p.Spec),
		Snapshotter: p.Snapshotter,
		SnapshotKey: p.SnapshotKey,
		SandboxID:   p.Sandbox,
	}
	if r := p.Runtime; r != nil {
		c.Runtime = containers.RuntimeInfo{Name: r.Name, Options: anyOrNil(r.Options)}
	}
	if len(p.Extensions) > 0 {
		c.Extensions = make(map[string]typeurl.Any, len(p.Extensions))
		for k, v := range p.Extensions {
			c.Extensions[k] = anyOrNil(v)
		}
	}
	return c
}

func anyOrNil(a *anypb.Any) typeurl.Any {
	if a == nil {
		return nil
	}
	return a
}
