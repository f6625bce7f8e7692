// Package snapshots serves containerd.services.snapshots.v1.Snapshots over
// the namespaced snapshotters of the metadata database.
package snapshots

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/snapshots"
	api "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Getter returns the snapshotter called name, nil if there is none.
type Getter func(name string) snapshots.Snapshotter

// Service is the gRPC service.
type Service struct {
	api.UnimplementedSnapshotsServer
	get Getter
}

// New returns the service over the snapshotters get returns.
func New(get Getter) *Service { return &Service{get: get} }

// Register adds the service to s.
func (s *Service) Register(srv *grpc.Server) { api.RegisterSnapshotsServer(srv, s) }

func (s *Service) snapshotter(name string) (snapshots.Snapshotter, error) {
	if name == "" {
		return nil, fmt.Errorf("snapshotter name is required: %w", errdefs.ErrInvalidArgument)
	}
	sn := s.get(name)
	if sn == nil {
		return nil, fmt.Errorf("snapshotter %q is not loaded (see plugins ls): %w", name, errdefs.ErrNotFound)
	}
	return sn, nil
}

func (s *Service) Prepare(ctx context.Context, req *api.PrepareSnapshotRequest) (*api.PrepareSnapshotResponse, error) {
	sn, err := s.snapshotter(req.Snapshotter)
	if err != nil {
		return nil, err
	}
	mounts, err := sn.Prepare(ctx, req.Key, req.Parent, snapshots.WithLabels(req.Labels))
	if err != nil {
		return nil, err
	}
	return &api.PrepareSnapshotResponse{Mounts: MountsToProto(mounts)}, nil
}

func (s *Service) View(ctx context.Context, req *api.ViewSnapshotRequest) (*api.ViewSnapshotResponse, error) {
	sn, err := s.snapshotter(req.Snapshotter)
	if err != nil {
		return nil, err
	}
	mounts, err := sn.View(ctx, req.Key, req.Parent, snapshots.WithLabels(req.Labels))
	if err != nil {
		return nil, err
	}
	return &api.ViewSnapshotResponse{Mounts: MountsToProto(mounts)}, nil
}

func (s *Service) Mounts(ctx context.Context, req *api.MountsRequest) (*api.MountsResponse, error) {
	sn, err := s.snapshotter(req.Snapshotter)
	if err != nil {
		return nil, err
	}
	mounts, err := sn.Mounts(ctx, req.Key)
	if err != nil {
		return nil, err
	}
	return &api.MountsResponse{Mounts: MountsToProto(mounts)}, nil
}

func (s *Service) Commit(ctx context.Context, req *api.CommitSnapshotRequest) (*emptypb.Empty, error) {
	sn, err := s.snapshotter(req.Snapshotter)
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, sn.Commit(ctx, req.Name, req.Key, snapshots.WithLabels(req.Labels))
}

func (s *Service) Remove(ctx context.Context, req *api.RemoveSnapshotRequest) (*emptypb.Empty, error) {
	sn, err := s.snapshotter(req.Snapshotter)
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, sn.Remove(ctx, req.Key)
}

func (s *Service) Stat(ctx context.Context, req *api.StatSnapshotRequest) (*api.StatSnapshotResponse, error) {
	sn, err := s.snapshotter(req.Snapshotter)
	if err != nil {
		return nil, err
	}
	info, err := sn.Stat(ctx, req.Key)
	if err != nil {
		return nil, err
	}
	return &api.StatSnapshotResponse{Info: infoToProto(info)}, nil
}

func (s *Service) Update(ctx context.Context, req *api.UpdateSnapshotRequest) (*api.UpdateSnapshotResponse, error) {
	sn, err := s.snapshotter(req.Snapshotter)
	if err != nil {
		return nil, err
	}
	info := snapshots.Info{Name: req.GetInfo().GetName(), Labels: req.GetInfo().GetLabels()}
	info, err = sn.Update(ctx, info, req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, err
	}
	return &api.UpdateSnapshotResponse{Info: infoToProto(info)}, nil
}

func (s *Service) List(req *api.ListSnapshotsRequest, stream api.Snapshots_ListServer) error {
	sn, err := s.snapshotter(req.Snapshotter)
	if err != nil {
		return err
	}
	var batch []*api.Info
	err = sn.Walk(stream.Context(), func(_ context.Context, info snapshots.Info) error {
		batch = append(batch, infoToProto(info))
		if len(batch) < 100 {
			return nil
		}
		err := stream.Send(&api.ListSnapshotsResponse{Info: batch})
		batch = nil
		return err
	}, req.Filters...)
	if err != nil {
		return err
	}
	if len(batch) > 0 {
		return stream.Send(&api.ListSnapshotsResponse{Info: batch})
	}
	return nil
}

func (s *Service) Usage(ctx context.Context, req *api.UsageRequest) (*api.UsageResponse, error) {
	sn, err := s.snapshotter(req.Snapshotter)
	if err != nil {
		return nil, err
	}
	u, err := sn.Usage(ctx, req.Key)
	if err != nil {
		return nil, err
	}
	return &api.UsageResponse{Size: u.Size, Inodes: u.Inodes}, nil
}

func (s *Service) Cleanup(ctx context.Context, req *api.CleanupRequest) (*emptypb.Empty, error) {
	sn, err := s.snapshotter(req.Snapshotter)
	if err != nil {
		return nil, err
	}
	c, ok := sn.(snapshots.Cleaner)
	if !ok {
		return nil, fmt.Errorf("snapshotter %q cannot clean up: %w", req.Snapshotter, errdefs.ErrNotImplemented)
	}
	return &emptypb.Empty{}, c.Cleanup(ctx)
}

// MountsToProto converts mounts to their API form.
func MountsToProto(mounts []mount.Mount) []*types.Mount {
	out := make([]*types.Mount, len(mounts))
	for i, m := range mounts {
		out[i] = &types.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options}
	}
	return out
}

// MountsFromProto converts API mounts.
func MountsFromProto(mounts []*types.Mount) []mount.Mount {
	out := make([]mount.Mount, len(mounts))
	for i, m := range mounts {
		out[i] = mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options}
	}
	return out
}

func infoToProto(info snapshots.Info) *api.Info {
	kinds := map[snapshots.Kind]api.Kind{snapshots.KindView: api.Kind_VIEW, snapshots.KindActive: api.Kind_ACTIVE, snapshots.KindCommitted: api.Kind_COMMITTED}
	return &api.Info{
		Name:      info.Name,
		Parent:    info.Parent,
		Kind:      kinds[info.Kind],
		Labels:    info.Labels,
		CreatedAt: timestamppb.New(info.Created),
		UpdatedAt: timestamppb.New(info.Updated),
	}
}
