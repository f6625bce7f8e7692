// Package streaming serves containerd.services.streaming.v1.Streaming: a
// client opens a stream, names it with StreamInit, and services such as
// Transfer then send on it (progress) or receive from it, by that name, in
// the client's namespace.
package streaming

import (
	"context"
	"fmt"
	"sync"

	"github.com/berth-dev/berth/namespaces"
	api "github.com/containerd/containerd/api/services/streaming/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Stream is a client's named stream, seen from a service.
type Stream interface {
	Send(typeurl.Any) error
	Recv() (typeurl.Any, error)
	// Close ends the client's stream.
	Close() error
}

// Service is the gRPC service and the registry of open streams.
type Service struct {
	api.UnimplementedStreamingServer
	mu      sync.Mutex
	streams map[string]*stream // by namespace + "/" + name
	waiters map[string][]chan *stream
}

// New returns an empty Service.
func New() *Service {
	return &Service{streams: map[string]*stream{}, waiters: map[string][]chan *stream{}}
}

// Register adds the service to s.
func (s *Service) Register(srv *grpc.Server) { api.RegisterStreamingServer(srv, s) }

type stream struct {
	srv    api.Streaming_StreamServer
	closed chan struct{}
	once   sync.Once
}

func (st *stream) Send(a typeurl.Any) error { return st.srv.Send(typeurl.MarshalProto(a)) }

func (st *stream) Recv() (typeurl.Any, error) { return st.srv.Recv() }

func (st *stream) Close() error {
	st.once.Do(func() { close(st.closed) })
	return nil
}

// Stream registers the client's stream under the name of its first
// message, acknowledges it, and holds it open until the client goes or a
// service closes it.
func (s *Service) Stream(srv api.Streaming_StreamServer) error {
	ctx := srv.Context()
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	first, err := srv.Recv()
	if err != nil {
		return err
	}
	v, err := typeurl.UnmarshalAny(first)
	init, ok := v.(*api.StreamInit)
	if err != nil || !ok || init.ID == "" {
		return fmt.Errorf("stream: the first message must be a StreamInit with an id: %w", errdefs.ErrInvalidArgument)
	}
	st := &stream{srv: srv, closed: make(chan struct{})}
	key := ns + "/" + init.ID
	if err := s.add(key, st); err != nil {
		return err
	}
	defer s.remove(key, st)
	ack, _ := anypb.New(&emptypb.Empty{})
	if err := srv.Send(ack); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-st.closed:
	}
	return nil
}

func (s *Service) add(key string, st *stream) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.streams[key]; ok {
		return fmt.Errorf("stream %q: %w", key, errdefs.ErrAlreadyExists)
	}
	s.streams[key] = st
	for _, w := range s.waiters[key] {
		w <- st
	}
	delete(s.waiters, key)
	return nil
}

func (s *Service) remove(key string, st *stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams[key] == st {
		delete(s.streams, key)
	}
}

// Get returns stream name of the context's namespace, waiting for the
// client to open it until ctx ends.
func (s *Service) Get(ctx context.Context, name string) (Stream, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	key := ns + "/" + name
	s.mu.Lock()
	if st, ok := s.streams[key]; ok {
		s.mu.Unlock()
		return st, nil
	}
	w := make(chan *stream, 1)
	s.waiters[key] = append(s.waiters[key], w)
	s.mu.Unlock()
	select {
	case st := <-w:
		return st, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("stream %q in namespace %q was never opened: %w", name, ns, ctx.Err())
	}
}
