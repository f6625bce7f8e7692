package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/berth-dev/berth/leases"
	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/namespaces"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// maxMsgSize is containerd's default gRPC message size limit.
const maxMsgSize = 16 << 20

func (d *Daemon) newGRPCServer() *grpc.Server {
	return grpc.NewServer(
		grpc.MaxRecvMsgSize(maxMsgSize),
		grpc.MaxSendMsgSize(maxMsgSize),
		grpc.ChainUnaryInterceptor(d.unaryInterceptor),
		grpc.ChainStreamInterceptor(d.streamInterceptor),
	)
}

// requestContext puts the namespace and lease of the request headers, and
// the daemon's logger, into ctx.
func (d *Daemon) requestContext(ctx context.Context) context.Context {
	ns := namespaces.Default
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(namespaces.GRPCHeader); len(v) > 0 && v[0] != "" {
		ns = v[0]
	}
	ctx = namespaces.WithNamespace(ctx, ns)
	if v := md.Get(leases.GRPCHeader); len(v) > 0 && v[0] != "" {
		ctx = leases.WithLease(ctx, v[0])
	}
	return log.WithLogger(ctx, d.logger)
}

func (d *Daemon) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(d.requestContext(ctx), req)
	if err != nil {
		d.logger.Debug("request failed", "method", info.FullMethod, "error", err)
		return nil, errgrpc.ToGRPC(err)
	}
	return resp, nil
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w wrappedStream) Context() context.Context { return w.ctx }

func (d *Daemon) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	err := handler(srv, wrappedStream{ServerStream: ss, ctx: d.requestContext(ss.Context())})
	if err != nil {
		d.logger.Debug("stream failed", "method", info.FullMethod, "error", err)
		return errgrpc.ToGRPC(err)
	}
	return nil
}

func (d *Daemon) newTTRPCServer() (*ttrpc.Server, error) {
	return ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(
		func(ctx context.Context, um ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (any, error) {
			ns := namespaces.Default
			if v, ok := ttrpc.GetMetadataValue(ctx, namespaces.TTRPCHeader); ok && v != "" {
				ns = v
			}
			ctx = log.WithLogger(namespaces.WithNamespace(ctx, ns), d.logger)
			resp, err := m(ctx, um)
			if err != nil {
				return nil, errgrpc.ToGRPC(err)
			}
			return resp, nil
		}))
}

// listenUnix listens on path after removing a stale socket: the caller
// holds the root lock, and a live socket means another daemon with another
// root uses the same address, which is refused.
func listenUnix(path string, uid, gid int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, fmt.Errorf("create socket directory for %s: %w", path, err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("socket %s is in use by another process: stop it or choose another --address", path)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod socket %s: %w", path, err)
	}
	if uid != 0 || gid != 0 {
		if err := os.Chown(path, uid, gid); err != nil {
			l.Close()
			return nil, fmt.Errorf("chown socket %s to %d:%d: %w", path, uid, gid, err)
		}
	}
	return l, nil
}
