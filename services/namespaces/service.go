// Package namespaces serves containerd.services.namespaces.v1.Namespaces
// over the metadata namespace store.
package namespaces

import (
	"context"

	"github.com/berth-dev/berth/metadata"
	api "github.com/containerd/containerd/api/services/namespaces/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Service is the gRPC service.
type Service struct {
	api.UnimplementedNamespacesServer
	store *metadata.NamespaceStore
}

// New returns the service over store.
func New(store *metadata.NamespaceStore) *Service { return &Service{store: store} }

// Register adds the service to s.
func (s *Service) Register(srv *grpc.Server) { api.RegisterNamespacesServer(srv, s) }

func (s *Service) Get(ctx context.Context, req *api.GetNamespaceRequest) (*api.GetNamespaceResponse, error) {
	lbls, err := s.store.Labels(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	return &api.GetNamespaceResponse{Namespace: &api.Namespace{Name: req.Name, Labels: lbls}}, nil
}

func (s *Service) List(ctx context.Context, req *api.ListNamespacesRequest) (*api.ListNamespacesResponse, error) {
	names, err := s.store.List(ctx)
	if err != nil {
		return nil, err
	}
	resp := &api.ListNamespacesResponse{}
	for _, n := range names {
		lbls, err := s.store.Labels(ctx, n)
		if err != nil {
			continue // deleted meanwhile
		}
		resp.Namespaces = append(resp.Namespaces, &api.Namespace{Name: n, Labels: lbls})
	}
	return resp, nil
}

func (s *Service) Create(ctx context.Context, req *api.CreateNamespaceRequest) (*api.CreateNamespaceResponse, error) {
	ns := req.GetNamespace()
	if err := s.store.Create(ctx, ns.GetName(), ns.GetLabels()); err != nil {
		return nil, err
	}
	return &api.CreateNamespaceResponse{Namespace: ns}, nil
}

func (s *Service) Update(ctx context.Context, req *api.UpdateNamespaceRequest) (*api.UpdateNamespaceResponse, error) {
	ns := req.GetNamespace()
	lbls, err := s.store.Update(ctx, ns.GetName(), ns.GetLabels(), req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, err
	}
	return &api.UpdateNamespaceResponse{Namespace: &api.Namespace{Name: ns.GetName(), Labels: lbls}}, nil
}

func (s *Service) Delete(ctx context.Context, req *api.DeleteNamespaceRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, s.store.Delete(ctx, req.Name)
}
