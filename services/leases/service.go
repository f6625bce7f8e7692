// Package leases serves containerd.services.leases.v1.Leases over a
// leases.Manager.
package leases

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/berth-dev/berth/leases"
	api "github.com/containerd/containerd/api/services/leases/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Service is the gRPC service.
type Service struct {
	api.UnimplementedLeasesServer
	lm leases.Manager
}

// New returns the service over lm.
func New(lm leases.Manager) *Service { return &Service{lm: lm} }

// Register adds the service to s.
func (s *Service) Register(srv *grpc.Server) { api.RegisterLeasesServer(srv, s) }

// Create creates a lease; as containerd's service does, it makes an ID up
// when the request has none.
func (s *Service) Create(ctx context.Context, req *api.CreateRequest) (*api.CreateResponse, error) {
	id := req.ID
	if id == "" {
		id = randomID()
	}
	l, err := s.lm.Create(ctx, leases.Lease{ID: id, Labels: req.Labels})
	if err != nil {
		return nil, err
	}
	return &api.CreateResponse{Lease: toProto(l)}, nil
}

func (s *Service) Delete(ctx context.Context, req *api.DeleteRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, s.lm.Delete(ctx, req.ID, req.Sync)
}

func (s *Service) List(ctx context.Context, req *api.ListRequest) (*api.ListResponse, error) {
	ls, err := s.lm.List(ctx, req.Filters...)
	if err != nil {
		return nil, err
	}
	resp := &api.ListResponse{}
	for _, l := range ls {
		resp.Leases = append(resp.Leases, toProto(l))
	}
	return resp, nil
}

func (s *Service) AddResource(ctx context.Context, req *api.AddResourceRequest) (*emptypb.Empty, error) {
	r := req.GetResource()
	return &emptypb.Empty{}, s.lm.AddResource(ctx, req.ID, leases.Resource{ID: r.GetID(), Type: r.GetType()})
}

func (s *Service) DeleteResource(ctx context.Context, req *api.DeleteResourceRequest) (*emptypb.Empty, error) {
	r := req.GetResource()
	return &emptypb.Empty{}, s.lm.DeleteResource(ctx, req.ID, leases.Resource{ID: r.GetID(), Type: r.GetType()})
}

func (s *Service) ListResources(ctx context.Context, req *api.ListResourcesRequest) (*api.ListResourcesResponse, error) {
	rs, err := s.lm.ListResources(ctx, req.ID)
	if err != nil {
		return nil, err
	}
	resp := &api.ListResourcesResponse{}
	for _, r := range rs {
		resp.Resources = append(resp.Resources, &api.Resource{ID: r.ID, Type: r.Type})
	}
	return resp, nil
}

// randomID is the time and random bytes, in letters and digits only.
func randomID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%d-%x", time.Now().UnixNano(), b)
}

func toProto(l leases.Lease) *api.Lease {
	return &api.Lease{ID: l.ID, Labels: l.Labels, CreatedAt: timestamppb.New(l.CreatedAt)}
}
