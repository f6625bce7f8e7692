// Package version serves containerd.services.version.v1.Version.
package version

import (
	"context"

	api "github.com/containerd/containerd/api/services/version/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Service is the gRPC service.
type Service struct {
	api.UnimplementedVersionServer
	version, revision string
}

// New returns the service answering version and revision.
func New(version, revision string) *Service { return &Service{version: version, revision: revision} }

// Register adds the service to s.
func (s *Service) Register(srv *grpc.Server) { api.RegisterVersionServer(srv, s) }

func (s *Service) Version(context.Context, *emptypb.Empty) (*api.VersionResponse, error) {
	return &api.VersionResponse{Version: s.version, Revision: s.revision}, nil
}
