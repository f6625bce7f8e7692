// Package transfer serves containerd.services.transfer.v1.Transfer, the
// server-side image operations of containerd 2 clients: for now a pull
// (source OCIRegistry, destination ImageStore), reporting progress on the
// client's named stream (services/streaming).
package transfer

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/berth-dev/berth/content"
	"github.com/berth-dev/berth/images"
	"github.com/berth-dev/berth/pull"
	"github.com/berth-dev/berth/push"
	"github.com/berth-dev/berth/remotes"
	"github.com/berth-dev/berth/services/streaming"
	api "github.com/containerd/containerd/api/services/transfer/v1"
	"github.com/containerd/containerd/api/types"
	transfertypes "github.com/containerd/containerd/api/types/transfer"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

// ResolverFunc makes the registry client of a transfer from the client's
// resolver settings (hosts directory, headers, default scheme).
type ResolverFunc func(ctx context.Context, cfg *transfertypes.RegistryResolver) (remotes.Resolver, error)

// Service is the gRPC service.
type Service struct {
	api.UnimplementedTransferServer
	puller   *pull.Puller
	resolver ResolverFunc
	streams  *streaming.Service
	content  content.Store
	images   images.Store
}

// New returns the service: pulls through p, pushes from cs and is.
func New(p *pull.Puller, r ResolverFunc, streams *streaming.Service, cs content.Store, is images.Store) *Service {
	return &Service{puller: p, resolver: r, streams: streams, content: cs, images: is}
}

// Register adds the service to s.
func (s *Service) Register(srv *grpc.Server) { api.RegisterTransferServer(srv, s) }

func (s *Service) Transfer(ctx context.Context, req *api.TransferRequest) (*emptypb.Empty, error) {
	src, err := typeurl.UnmarshalAny(req.Source)
	if err != nil {
		return nil, fmt.Errorf("transfer: source: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	dst, err := typeurl.UnmarshalAny(req.Destination)
	if err != nil {
		return nil, fmt.Errorf("transfer: destination: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	progress, closeProgress := s.progress(ctx, req.GetOptions().GetProgressStream())
	defer closeProgress()
	switch src := src.(type) {
	case *transfertypes.OCIRegistry:
		if store, ok := dst.(*transfertypes.ImageStore); ok {
			return &emptypb.Empty{}, s.pull(ctx, src, store, progress)
		}
	case *transfertypes.ImageStore:
		if reg, ok := dst.(*transfertypes.OCIRegistry); ok {
			return &emptypb.Empty{}, s.push(ctx, src, reg, progress)
		}
	}
	return nil, fmt.Errorf("transfer from %s to %s: only pulls (OCIRegistry to ImageStore) and pushes (ImageStore to OCIRegistry) are served: %w",
		req.Source.GetTypeUrl(), req.Destination.GetTypeUrl(), errdefs.ErrNotImplemented)
}

func (s *Service) push(ctx context.Context, store *transfertypes.ImageStore, reg *transfertypes.OCIRegistry, progress func(*transfertypes.Progress)) error {
	r, err := s.resolver(ctx, reg.GetResolver())
	if err != nil {
		return err
	}
	err = push.Push(ctx, s.content, s.images, r, store.Name, reg.Reference, func(p push.Progress) {
		progress(&transfertypes.Progress{Event: p.Status, Name: "blob " + p.Desc.Digest.String(), Progress: p.Desc.Size, Total: p.Desc.Size,
			Desc: &types.Descriptor{MediaType: p.Desc.MediaType, Digest: p.Desc.Digest.String(), Size: p.Desc.Size}})
	})
	if err != nil {
		return err
	}
	progress(&transfertypes.Progress{Event: fmt.Sprintf("Completed push to %s", reg.Reference)})
	return nil
}

func (s *Service) pull(ctx context.Context, reg *transfertypes.OCIRegistry, store *transfertypes.ImageStore, progress func(*transfertypes.Progress)) error {
	r, err := s.resolver(ctx, reg.GetResolver())
	if err != nil {
		return err
	}
	opts := []pull.Opt{pull.WithImageLabels(store.Labels), pull.WithProgress(func(p pull.Progress) {
		progress(&transfertypes.Progress{Event: string(p.Status), Name: p.Kind + " " + p.Digest.String(),
			Progress: p.Offset, Total: p.Total, Desc: &types.Descriptor{Digest: p.Digest.String(), Size: p.Total}})
	})}
	if store.Name != "" {
		opts = append(opts, pull.WithImageName(store.Name))
	}
	var plats []ocispec.Platform
	for _, p := range store.Platforms {
		plats = append(plats, ocispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant})
	}
	if len(plats) > 0 {
		opts = append(opts, pull.WithPlatforms(plats...))
	}
	if store.AllMetadata {
		opts = append(opts, pull.WithAllPlatforms())
	}
	if len(store.Unpacks) == 0 {
		opts = append(opts, pull.WithoutUnpack())
	} else if sn := store.Unpacks[0].Snapshotter; sn != "" {
		opts = append(opts, pull.WithSnapshotter(sn))
	}
	progress(&transfertypes.Progress{Event: "resolving", Name: reg.Reference})
	img, err := s.puller.Pull(ctx, r, reg.Reference, opts...)
	if err != nil {
		return err
	}
	progress(&transfertypes.Progress{Event: "saved", Name: img.Name,
		Desc: &types.Descriptor{MediaType: img.Target.MediaType, Digest: img.Target.Digest.String(), Size: img.Target.Size}})
	progress(&transfertypes.Progress{Event: fmt.Sprintf("Completed pull from %s", reg.Reference)})
	return nil
}

// progress returns a function sending progress on the client's stream
// (doing nothing without one) and a function closing the stream.
func (s *Service) progress(ctx context.Context, name string) (func(*transfertypes.Progress), func()) {
	if name == "" {
		return func(*transfertypes.Progress) {}, func() {}
	}
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	st, err := s.streams.Get(gctx, name)
	cancel()
	if err != nil {
		return func(*transfertypes.Progress) {}, func() {}
	}
	send := make(chan *transfertypes.Progress, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range send {
			a, err := anypb.New(p)
			if err == nil && st.Send(a) != nil {
				return
			}
		}
	}()
	var mu sync.Mutex
	closed := false
	return func(p *transfertypes.Progress) {
			// Downloads shared with other pulls may report after this pull
			// returned: the flag keeps them off the closed channel.
			mu.Lock()
			defer mu.Unlock()
			if closed {
				return
			}
			select {
			case send <- p:
			default: // a slow client misses progress, never stalls the pull
			}
		}, func() {
			mu.Lock()
			closed = true
			close(send)
			mu.Unlock()
			<-done
			st.Close()
		}
}
