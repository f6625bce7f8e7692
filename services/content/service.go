// Package content serves containerd.services.content.v1.Content over a
// content.Store: blob info and labels, listing, reading, and the
// STAT/WRITE/COMMIT write stream.
package content

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/content"
	api "github.com/containerd/containerd/api/services/content/v1"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// readChunk is the data size of one Read response.
const readChunk = 1 << 20

// listBatch is the number of infos in one List response.
const listBatch = 100

// Service is the gRPC service.
type Service struct {
	api.UnimplementedContentServer
	store content.Store
}

// New returns the service over store.
func New(store content.Store) *Service { return &Service{store: store} }

// Register adds the service to s.
func (s *Service) Register(srv *grpc.Server) { api.RegisterContentServer(srv, s) }

func (s *Service) Info(ctx context.Context, req *api.InfoRequest) (*api.InfoResponse, error) {
	dgst, err := parseDigest(req.Digest)
	if err != nil {
		return nil, err
	}
	info, err := s.store.Info(ctx, dgst)
	if err != nil {
		return nil, err
	}
	return &api.InfoResponse{Info: infoToProto(info)}, nil
}

func (s *Service) Update(ctx context.Context, req *api.UpdateRequest) (*api.UpdateResponse, error) {
	dgst, err := parseDigest(req.GetInfo().GetDigest())
	if err != nil {
		return nil, err
	}
	info, err := s.store.Update(ctx, content.Info{Digest: dgst, Labels: req.GetInfo().GetLabels()}, req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, err
	}
	return &api.UpdateResponse{Info: infoToProto(info)}, nil
}

func (s *Service) List(req *api.ListContentRequest, stream api.Content_ListServer) error {
	var batch []*api.Info
	err := s.store.Walk(stream.Context(), func(info content.Info) error {
		batch = append(batch, infoToProto(info))
		if len(batch) < listBatch {
			return nil
		}
		err := stream.Send(&api.ListContentResponse{Info: batch})
		batch = nil
		return err
	}, req.Filters...)
	if err != nil {
		return err
	}
	if len(batch) > 0 {
		return stream.Send(&api.ListContentResponse{Info: batch})
	}
	return nil
}

func (s *Service) Delete(ctx context.Context, req *api.DeleteContentRequest) (*emptypb.Empty, error) {
	dgst, err := parseDigest(req.Digest)
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, s.store.Delete(ctx, dgst)
}

func (s *Service) Status(ctx context.Context, req *api.StatusRequest) (*api.StatusResponse, error) {
	st, err := s.store.Status(ctx, req.Ref)
	if err != nil {
		return nil, err
	}
	return &api.StatusResponse{Status: statusToProto(st)}, nil
}

func (s *Service) ListStatuses(ctx context.Context, req *api.ListStatusesRequest) (*api.ListStatusesResponse, error) {
	sts, err := s.store.ListStatuses(ctx, req.Filters...)
	if err != nil {
		return nil, err
	}
	resp := &api.ListStatusesResponse{}
	for _, st := range sts {
		resp.Statuses = append(resp.Statuses, statusToProto(st))
	}
	return resp, nil
}

func (s *Service) Abort(ctx context.Context, req *api.AbortRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, s.store.Abort(ctx, req.Ref)
}

func parseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", fmt.Errorf("digest %q: %v: %w", s, err, errdefs.ErrInvalidArgument)
	}
	return d, nil
}

func infoToProto(info content.Info) *api.Info {
	return &api.Info{
		Digest:    info.Digest.String(),
		Size:      info.Size,
		CreatedAt: timestamppb.New(info.CreatedAt),
		UpdatedAt: timestamppb.New(info.UpdatedAt),
		Labels:    info.Labels,
	}
}

func statusToProto(st content.Status) *api.Status {
	return &api.Status{
		Ref:       st.Ref,
		Offset:    st.Offset,
		Total:     st.Total,
		Expected:  st.Expected.String(),
		StartedAt: timestamppb.New(st.StartedAt),
		UpdatedAt: timestamppb.New(st.UpdatedAt),
	}
}
