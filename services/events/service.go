// Package events serves containerd.services.events.v1.Events over gRPC and
// containerd.services.events.ttrpc.v1.Events (Forward, used by shims) over
// ttrpc, on the daemon's event exchange.
package events

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/berth-dev/berth/events"
	"github.com/berth-dev/berth/namespaces"
	api "github.com/containerd/containerd/api/services/events/v1"
	ttrpcapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Exchange is what the service needs of the event exchange.
type Exchange interface {
	events.Forwarder
	events.Subscriber
}

// Service is the gRPC service.
type Service struct {
	api.UnimplementedEventsServer
	ex Exchange
	// shutdown closes when the daemon stops: subscriptions end then.
	shutdown     chan struct{}
	shutdownOnce sync.Once
}

// New returns the service over ex.
func New(ex Exchange) *Service { return &Service{ex: ex, shutdown: make(chan struct{})} }

// Shutdown ends every subscription, present and future, with Unavailable.
// A subscription never ends by itself, so the daemon calls this before its
// graceful stop, which would otherwise wait for them until it times out.
func (s *Service) Shutdown() { s.shutdownOnce.Do(func() { close(s.shutdown) }) }

// Register adds the service to s.
func (s *Service) Register(srv *grpc.Server) { api.RegisterEventsServer(srv, s) }

// RegisterTTRPC adds the ttrpc Forward service to srv.
func (s *Service) RegisterTTRPC(srv *ttrpc.Server) {
	ttrpcapi.RegisterEventsService(srv, ttrpcService{s.ex})
}

// Publish wraps an already-encoded event in an envelope of the request's
// namespace.
func (s *Service) Publish(ctx context.Context, req *api.PublishRequest) (*emptypb.Empty, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	if req.Event == nil {
		return nil, fmt.Errorf("publish %q: event is required: %w", req.Topic, errdefs.ErrInvalidArgument)
	}
	env := &events.Envelope{Timestamp: time.Now().UTC(), Namespace: ns, Topic: req.Topic, Event: req.Event}
	return &emptypb.Empty{}, s.ex.Forward(ctx, env)
}

func (s *Service) Forward(ctx context.Context, req *api.ForwardRequest) (*emptypb.Empty, error) {
	env, err := fromProto(req.Envelope)
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, s.ex.Forward(ctx, env)
}

func (s *Service) Subscribe(req *api.SubscribeRequest, stream api.Events_SubscribeServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	ch, errs := s.ex.Subscribe(ctx, req.Filters...)
	for {
		select {
		case env, ok := <-ch:
			if !ok {
				return <-errs
			}
			if err := stream.Send(toProto(env)); err != nil {
				return err
			}
		case err := <-errs:
			return err
		case <-s.shutdown:
			return fmt.Errorf("events: berthd is shutting down: %w", errdefs.ErrUnavailable)
		}
	}
}

func toProto(env *events.Envelope) *types.Envelope {
	return &types.Envelope{
		Timestamp: timestamppb.New(env.Timestamp),
		Namespace: env.Namespace,
		Topic:     env.Topic,
		Event:     typeurl.MarshalProto(env.Event),
	}
}

func fromProto(p *types.Envelope) (*events.Envelope, error) {
	if p == nil || p.Event == nil {
		return nil, fmt.Errorf("forward: envelope with an event is required: %w", errdefs.ErrInvalidArgument)
	}
	return &events.Envelope{Timestamp: p.Timestamp.AsTime(), Namespace: p.Namespace, Topic: p.Topic, Event: p.Event}, nil
}

type ttrpcService struct{ ex Exchange }

func (t ttrpcService) Forward(ctx context.Context, req *ttrpcapi.ForwardRequest) (*emptypb.Empty, error) {
	if req.Envelope == nil {
		return nil, fmt.Errorf("forward: envelope is required: %w", errdefs.ErrInvalidArgument)
	}
	env := req.Envelope
	return &emptypb.Empty{}, t.ex.Forward(ctx, &events.Envelope{
		Timestamp: env.Timestamp.AsTime(), Namespace: env.Namespace, Topic: env.Topic, Event: env.Event,
	})
}
