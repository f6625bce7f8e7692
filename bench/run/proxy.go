package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// rpcProxy sits between ctr and a daemon: it forwards every gRPC call as
// opaque frames and records when each began and ended, so that a run's
// time can be split by RPC as the client sees it. It adds a hop of its
// own to each call, well under a millisecond on loopback.
type rpcProxy struct {
	socket  string
	lis     net.Listener
	srv     *grpc.Server
	backend *grpc.ClientConn

	mu    sync.Mutex
	start time.Time // of the run being traced
	calls []rpcCall
}

// rpcCall is one call through the proxy, its times since the run began.
type rpcCall struct {
	Method string        `json:"method"`
	Start  time.Duration `json:"start_ns"`
	End    time.Duration `json:"end_ns"`
	Err    string        `json:"error,omitempty"`
}

// startProxy listens on socket and forwards to the daemon on backend.
func startProxy(socket, backend string) (*rpcProxy, error) {
	conn, err := grpc.NewClient("unix://"+backend, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		return nil, err
	}
	_ = os.Remove(socket)
	lis, err := net.Listen("unix", socket)
	if err != nil {
		conn.Close()
		return nil, err
	}
	p := &rpcProxy{socket: socket, lis: lis, backend: conn}
	p.srv = grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(p.forward))
	go func() { _ = p.srv.Serve(lis) }()
	return p, nil
}

func (p *rpcProxy) close() {
	p.srv.Stop()
	p.backend.Close()
	_ = os.Remove(p.socket)
}

// reset forgets the calls recorded so far; times of later calls count
// from t0.
func (p *rpcProxy) reset(t0 time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls, p.start = nil, t0
}

// take returns the calls recorded since reset.
func (p *rpcProxy) take() []rpcCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]rpcCall(nil), p.calls...)
}

// forward relays one call of any method in both directions until the
// daemon ends it, then records it.
func (p *rpcProxy) forward(_ any, ss grpc.ServerStream) error {
	start := time.Now()
	method, _ := grpc.MethodFromServerStream(ss)
	ctx, cancel := context.WithCancel(outgoing(ss.Context()))
	defer cancel()
	cs, err := p.backend.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		p.record(method, start, err)
		return err
	}
	go func() {
		for {
			var f frame
			if err := ss.RecvMsg(&f); err != nil {
				if errors.Is(err, io.EOF) {
					_ = cs.CloseSend()
				} else {
					cancel()
				}
				return
			}
			if err := cs.SendMsg(&f); err != nil {
				return // RecvMsg below sees why
			}
		}
	}()
	for n := 0; ; n++ {
		var f frame
		err := cs.RecvMsg(&f)
		if n == 0 {
			if md, herr := cs.Header(); herr == nil {
				_ = ss.SendHeader(md)
			}
		}
		if err != nil {
			ss.SetTrailer(cs.Trailer())
			if errors.Is(err, io.EOF) {
				err = nil
			}
			p.record(method, start, err)
			return err
		}
		if err := ss.SendMsg(&f); err != nil {
			return err
		}
	}
}

func (p *rpcProxy) record(method string, start time.Time, err error) {
	end := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	c := rpcCall{Method: method, Start: start.Sub(p.start), End: end.Sub(p.start)}
	if err != nil {
		c.Err = err.Error()
	}
	p.calls = append(p.calls, c)
}

// outgoing carries the caller's metadata (the containerd-namespace
// header) to the daemon, without the transport's own headers.
func outgoing(ctx context.Context) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	out := metadata.MD{}
	for k, v := range md {
		if strings.HasPrefix(k, ":") || strings.HasPrefix(k, "grpc-") || k == "content-type" || k == "user-agent" || k == "te" {
			continue
		}
		out[k] = v
	}
	return metadata.NewOutgoingContext(ctx, out)
}

// frame is one message, left encoded.
type frame struct{ b []byte }

// rawCodec passes frames through without decoding them.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" } // what both ends negotiate

func (rawCodec) Marshal(v any) ([]byte, error) {
	f, ok := v.(*frame)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
	}
	return f.b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	f.b = append([]byte(nil), data...)
	return nil
}
