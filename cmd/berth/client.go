package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

const (
	defaultAddress   = "/run/berth/berth.sock"
	defaultNamespace = "default"

	// namespaceHeader is the gRPC metadata key containerd's services (and
	// berthd's) read the namespace of a call from.
	namespaceHeader = "containerd-namespace"

	// maxMessageSize matches the daemon's limit, so large listings fit.
	maxMessageSize = 16 << 20
)

// conn is the gRPC connection a command talks to berthd over. Every call on
// it carries the namespace header and returns errdefs errors rather than
// gRPC statuses.
type conn struct {
	cc      *grpc.ClientConn
	address string

	mu      sync.Mutex
	dialErr error // result of the most recent dial, nil once connected
}

// dial prepares a connection to the daemon socket at address. gRPC connects
// lazily, so an absent daemon is only noticed by the first call; explain
// turns that failure into advice.
func dial(address, namespace string) (*conn, error) {
	path := strings.TrimPrefix(address, "unix://")
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("socket address %q: %w", address, err)
	}
	c := &conn{address: address}
	cc, err := grpc.NewClient("unix://"+abs,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(c.dialer(abs)),
		grpc.WithChainUnaryInterceptor(namespaceUnary(namespace), nativeErrorsUnary),
		grpc.WithChainStreamInterceptor(namespaceStream(namespace), nativeErrorsStream),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(maxMessageSize),
			grpc.MaxCallSendMsgSize(maxMessageSize)),
	)
	if err != nil {
		return nil, fmt.Errorf("socket address %q: %w", address, err)
	}
	c.cc = cc
	return c, nil
}

func (c *conn) close() error { return c.cc.Close() }

// dialer connects to the unix socket and remembers why it could not, because
// gRPC reports a failed dial only as a generic Unavailable status.
func (c *conn) dialer(path string) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "unix", path)
		c.mu.Lock()
		c.dialErr = err
		c.mu.Unlock()
		return nc, err
	}
}

// explain returns the error to show the user for err, returned by a call on
// c: a connectError when the daemon could not be reached, a note when it
// lacks the service, err otherwise.
func (c *conn) explain(err error) error {
	if errdefs.IsNotImplemented(err) {
		return fmt.Errorf("%w (not implemented by the daemon at %s)", err, c.address)
	}
	if err == nil || !errdefs.IsUnavailable(err) {
		return err
	}
	c.mu.Lock()
	dialErr := c.dialErr
	c.mu.Unlock()
	if dialErr == nil {
		return err
	}
	return &connectError{address: c.address, err: dialErr}
}

// connectError says that berthd was not reachable, and what to check.
type connectError struct {
	address string
	err     error
}

func (e *connectError) Error() string {
	reason := e.err.Error()
	var errno syscall.Errno
	if errors.As(e.err, &errno) {
		reason = errno.Error()
	}
	return fmt.Sprintf("cannot connect to berthd at %s: %s (is berthd running? set --address or BERTH_ADDRESS)",
		e.address, reason)
}

func (e *connectError) Unwrap() error { return e.err }

// run connects to berthd and runs fn within the --timeout; it returns fn's
// error as the user should read it.
func (a *app) run(ctx context.Context, fn func(context.Context, *conn) error) error {
	c, err := dial(a.opts.address, a.opts.namespace)
	if err != nil {
		return err
	}
	defer c.close()
	if a.opts.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.opts.timeout)
		defer cancel()
	}
	err = c.explain(fn(ctx, c))
	if errors.Is(err, context.DeadlineExceeded) && a.opts.timeout > 0 {
		return fmt.Errorf("gave up after --timeout %s: %w", a.opts.timeout, err)
	}
	return err
}

// eachName calls fn for every name, printing each name done (a JSON list of
// them with --format json) and each error, so one bad name does not stop the
// rest. It stops early only when the daemon is unreachable.
func (a *app) eachName(ctx context.Context, c *conn, names []string,
	fn func(ctx context.Context, name string) error) error {
	done := []string{}
	failed := false
	for _, name := range names {
		err := c.explain(fn(ctx, name))
		var ce *connectError
		switch {
		case errors.As(err, &ce):
			return err
		case err != nil:
			a.printError(err)
			failed = true
		case a.opts.format == formatJSON:
			done = append(done, name)
		default:
			fmt.Fprintln(a.stdout, name)
		}
	}
	if a.opts.format == formatJSON {
		if err := writeJSON(a.stdout, done); err != nil {
			return err
		}
	}
	if failed {
		return errReported
	}
	return nil
}

func (a *app) printError(err error) {
	fmt.Fprintf(a.stderr, "berth: %v\n", err)
}

func (a *app) out() printer { return printer{format: a.opts.format, w: a.stdout} }

func namespaceUnary(ns string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		ctx = metadata.AppendToOutgoingContext(ctx, namespaceHeader, ns)
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

func namespaceStream(ns string) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
		streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		ctx = metadata.AppendToOutgoingContext(ctx, namespaceHeader, ns)
		return streamer(ctx, desc, cc, method, opts...)
	}
}

// nativeErrorsUnary maps gRPC statuses back to errdefs classes at the edge,
// so commands can wrap them with %w and test them with errdefs.Is*.
func nativeErrorsUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return toNative(invoker(ctx, method, req, reply, cc, opts...))
}

func nativeErrorsStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
	streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, toNative(err)
	}
	return nativeErrorStream{s}, nil
}

// nativeErrorStream is a client stream whose errors are errdefs errors. io.EOF
// passes unchanged: it is how a stream ends.
type nativeErrorStream struct{ grpc.ClientStream }

func (s nativeErrorStream) SendMsg(m any) error { return toNative(s.ClientStream.SendMsg(m)) }
func (s nativeErrorStream) RecvMsg(m any) error { return toNative(s.ClientStream.RecvMsg(m)) }

func toNative(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return errgrpc.ToNative(err)
}
