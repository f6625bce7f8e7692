package shim

import (
	"context"

	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
)

// Task service names. The v3 API is the v2 one under a new package name:
// same methods, same messages field for field, so one method table with
// the v2 messages serves both. Registering through the v3 package instead
// would link its gRPC stubs, and with them google.golang.org/grpc, net/http
// and crypto/tls: 1.6 MiB more resident memory in every shim.
const (
	taskServiceV2 = "containerd.task.v2.Task"
	taskServiceV3 = "containerd.task.v3.Task"
)

// RegisterTTRPC serves s on srv as containerd.task.v2.Task and as
// containerd.task.v3.Task.
func (s *Service) RegisterTTRPC(srv *ttrpc.Server) {
	srv.RegisterService(taskServiceV2, &ttrpc.ServiceDesc{Methods: s.methods()})
	srv.RegisterService(taskServiceV3, &ttrpc.ServiceDesc{Methods: s.methods()})
}

// methods is the task API's method table.
func (s *Service) methods() map[string]ttrpc.Method {
	return map[string]ttrpc.Method{
		"State":      method(s.State),
		"Create":     method(s.Create),
		"Start":      method(s.Start),
		"Delete":     method(s.Delete),
		"Pids":       method(s.Pids),
		"Pause":      method(s.Pause),
		"Resume":     method(s.Resume),
		"Checkpoint": method(s.Checkpoint),
		"Kill":       method(s.Kill),
		"Exec":       method(s.Exec),
		"ResizePty":  method(s.ResizePty),
		"CloseIO":    method(s.CloseIO),
		"Update":     method(s.Update),
		"Wait":       method(s.Wait),
		"Stats":      method(s.Stats),
		"Connect":    method(s.Connect),
		"Shutdown":   method(s.Shutdown),
	}
}

// method adapts a typed handler to ttrpc, as generated stubs do: decode
// the request into a new Req, call fn.
func method[Req any, PReq interface {
	*Req
	proto.Message
}, Resp any](fn func(context.Context, PReq) (Resp, error)) ttrpc.Method {
	return func(ctx context.Context, unmarshal func(any) error) (any, error) {
		req := PReq(new(Req))
		if err := unmarshal(req); err != nil {
			return nil, err
		}
		return fn(ctx, req)
	}
}

// ErrorInterceptor maps errdefs classes to gRPC status codes, once, at the
// edge, so that the daemon sees NotFound, AlreadyExists, ... as it would
// from containerd's shim.
func ErrorInterceptor(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
	resp, err := method(ctx, unmarshal)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return resp, nil
}
