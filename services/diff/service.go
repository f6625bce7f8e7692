// Package diff serves containerd.services.diff.v1.Diff: Apply a layer blob
// onto mounts, and Diff two sets of mounts into a new layer blob.
package diff

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/diff"
	snapshotssvc "github.com/berth-dev/berth/services/snapshots"
	api "github.com/containerd/containerd/api/services/diff/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
)

// Differ is what the service needs.
type Differ interface {
	diff.Applier
	diff.Comparer
}

// Service is the gRPC service.
type Service struct {
	api.UnimplementedDiffServer
	d Differ
}

// New returns the service over d.
func New(d Differ) *Service { return &Service{d: d} }

// Register adds the service to s.
func (s *Service) Register(srv *grpc.Server) { api.RegisterDiffServer(srv, s) }

func (s *Service) Apply(ctx context.Context, req *api.ApplyRequest) (*api.ApplyResponse, error) {
	if req.Diff == nil {
		return nil, fmt.Errorf("apply: diff descriptor is required: %w", errdefs.ErrInvalidArgument)
	}
	payloads := map[string]typeurl.Any{}
	for k, v := range req.Payloads {
		payloads[k] = v
	}
	applied, err := s.d.Apply(ctx, descFromProto(req.Diff), snapshotssvc.MountsFromProto(req.Mounts),
		diff.WithPayloads(payloads), diff.WithSyncFs(req.SyncFs))
	if err != nil {
		return nil, err
	}
	return &api.ApplyResponse{Applied: descToProto(applied)}, nil
}

func (s *Service) Diff(ctx context.Context, req *api.DiffRequest) (*api.DiffResponse, error) {
	var opts []diff.CompareOpt
	if req.MediaType != "" {
		opts = append(opts, diff.WithMediaType(req.MediaType))
	}
	if req.Ref != "" {
		opts = append(opts, diff.WithReference(req.Ref))
	}
	if len(req.Labels) > 0 {
		opts = append(opts, diff.WithLabels(req.Labels))
	}
	desc, err := s.d.Compare(ctx, snapshotssvc.MountsFromProto(req.Left), snapshotssvc.MountsFromProto(req.Right), opts...)
	if err != nil {
		return nil, err
	}
	return &api.DiffResponse{Diff: descToProto(desc)}, nil
}

func descFromProto(d *types.Descriptor) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: d.MediaType, Digest: digest.Digest(d.Digest), Size: d.Size, Annotations: d.Annotations}
}

func descToProto(d ocispec.Descriptor) *types.Descriptor {
	return &types.Descriptor{MediaType: d.MediaType, Digest: d.Digest.String(), Size: d.Size, Annotations: d.Annotations}
}
