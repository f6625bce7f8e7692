package shim

import (
	"context"
	"fmt"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// RegisterTTRPC serves s on srv as containerd.task.v2.Task and as
// containerd.task.v3.Task, whose messages are the same on the wire.
func (s *Service) RegisterTTRPC(srv *ttrpc.Server) {
	taskv2.RegisterTaskService(srv, s)
	taskv3.RegisterTTRPCTaskService(srv, v3{s})
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

// v3 serves the v3 service by re-reading each message as its v2 twin.
type v3 struct{ s *Service }

// call converts in to a fresh V2 request, runs fn and converts its answer
// into out.
func call[V2Req, V2Resp proto.Message](in proto.Message, req V2Req, fn func(V2Req) (V2Resp, error), out proto.Message) error {
	if err := recast(in, req); err != nil {
		return err
	}
	resp, err := fn(req)
	if err != nil {
		return err
	}
	return recast(resp, out)
}

func recast(from, to proto.Message) error {
	data, err := proto.Marshal(from)
	if err != nil {
		return fmt.Errorf("task v3: encode %T: %w", from, err)
	}
	if err := proto.Unmarshal(data, to); err != nil {
		return fmt.Errorf("task v3: decode %T: %w", to, err)
	}
	return nil
}

func (v v3) State(ctx context.Context, in *taskv3.StateRequest) (*taskv3.StateResponse, error) {
	out := &taskv3.StateResponse{}
	return out, call(in, &taskv2.StateRequest{}, func(r *taskv2.StateRequest) (*taskv2.StateResponse, error) { return v.s.State(ctx, r) }, out)
}

func (v v3) Create(ctx context.Context, in *taskv3.CreateTaskRequest) (*taskv3.CreateTaskResponse, error) {
	out := &taskv3.CreateTaskResponse{}
	return out, call(in, &taskv2.CreateTaskRequest{}, func(r *taskv2.CreateTaskRequest) (*taskv2.CreateTaskResponse, error) { return v.s.Create(ctx, r) }, out)
}

func (v v3) Start(ctx context.Context, in *taskv3.StartRequest) (*taskv3.StartResponse, error) {
	out := &taskv3.StartResponse{}
	return out, call(in, &taskv2.StartRequest{}, func(r *taskv2.StartRequest) (*taskv2.StartResponse, error) { return v.s.Start(ctx, r) }, out)
}

func (v v3) Delete(ctx context.Context, in *taskv3.DeleteRequest) (*taskv3.DeleteResponse, error) {
	out := &taskv3.DeleteResponse{}
	return out, call(in, &taskv2.DeleteRequest{}, func(r *taskv2.DeleteRequest) (*taskv2.DeleteResponse, error) { return v.s.Delete(ctx, r) }, out)
}

func (v v3) Pids(ctx context.Context, in *taskv3.PidsRequest) (*taskv3.PidsResponse, error) {
	out := &taskv3.PidsResponse{}
	return out, call(in, &taskv2.PidsRequest{}, func(r *taskv2.PidsRequest) (*taskv2.PidsResponse, error) { return v.s.Pids(ctx, r) }, out)
}

func (v v3) Wait(ctx context.Context, in *taskv3.WaitRequest) (*taskv3.WaitResponse, error) {
	out := &taskv3.WaitResponse{}
	return out, call(in, &taskv2.WaitRequest{}, func(r *taskv2.WaitRequest) (*taskv2.WaitResponse, error) { return v.s.Wait(ctx, r) }, out)
}

func (v v3) Stats(ctx context.Context, in *taskv3.StatsRequest) (*taskv3.StatsResponse, error) {
	out := &taskv3.StatsResponse{}
	return out, call(in, &taskv2.StatsRequest{}, func(r *taskv2.StatsRequest) (*taskv2.StatsResponse, error) { return v.s.Stats(ctx, r) }, out)
}

func (v v3) Connect(ctx context.Context, in *taskv3.ConnectRequest) (*taskv3.ConnectResponse, error) {
	out := &taskv3.ConnectResponse{}
	return out, call(in, &taskv2.ConnectRequest{}, func(r *taskv2.ConnectRequest) (*taskv2.ConnectResponse, error) { return v.s.Connect(ctx, r) }, out)
}

// empty runs a v3 method whose answer is Empty.
func empty[V2Req proto.Message](in proto.Message, req V2Req, fn func(V2Req) (*emptypb.Empty, error)) (*emptypb.Empty, error) {
	out := &emptypb.Empty{}
	return out, call(in, req, fn, out)
}

func (v v3) Pause(ctx context.Context, in *taskv3.PauseRequest) (*emptypb.Empty, error) {
	return empty(in, &taskv2.PauseRequest{}, func(r *taskv2.PauseRequest) (*emptypb.Empty, error) { return v.s.Pause(ctx, r) })
}

func (v v3) Resume(ctx context.Context, in *taskv3.ResumeRequest) (*emptypb.Empty, error) {
	return empty(in, &taskv2.ResumeRequest{}, func(r *taskv2.ResumeRequest) (*emptypb.Empty, error) { return v.s.Resume(ctx, r) })
}

func (v v3) Checkpoint(ctx context.Context, in *taskv3.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return empty(in, &taskv2.CheckpointTaskRequest{}, func(r *taskv2.CheckpointTaskRequest) (*emptypb.Empty, error) { return v.s.Checkpoint(ctx, r) })
}

func (v v3) Kill(ctx context.Context, in *taskv3.KillRequest) (*emptypb.Empty, error) {
	return empty(in, &taskv2.KillRequest{}, func(r *taskv2.KillRequest) (*emptypb.Empty, error) { return v.s.Kill(ctx, r) })
}

func (v v3) Exec(ctx context.Context, in *taskv3.ExecProcessRequest) (*emptypb.Empty, error) {
	return empty(in, &taskv2.ExecProcessRequest{}, func(r *taskv2.ExecProcessRequest) (*emptypb.Empty, error) { return v.s.Exec(ctx, r) })
}

func (v v3) ResizePty(ctx context.Context, in *taskv3.ResizePtyRequest) (*emptypb.Empty, error) {
	return empty(in, &taskv2.ResizePtyRequest{}, func(r *taskv2.ResizePtyRequest) (*emptypb.Empty, error) { return v.s.ResizePty(ctx, r) })
}

func (v v3) CloseIO(ctx context.Context, in *taskv3.CloseIORequest) (*emptypb.Empty, error) {
	return empty(in, &taskv2.CloseIORequest{}, func(r *taskv2.CloseIORequest) (*emptypb.Empty, error) { return v.s.CloseIO(ctx, r) })
}

func (v v3) Update(ctx context.Context, in *taskv3.UpdateTaskRequest) (*emptypb.Empty, error) {
	return empty(in, &taskv2.UpdateTaskRequest{}, func(r *taskv2.UpdateTaskRequest) (*emptypb.Empty, error) { return v.s.Update(ctx, r) })
}

func (v v3) Shutdown(ctx context.Context, in *taskv3.ShutdownRequest) (*emptypb.Empty, error) {
	return empty(in, &taskv2.ShutdownRequest{}, func(r *taskv2.ShutdownRequest) (*emptypb.Empty, error) { return v.s.Shutdown(ctx, r) })
}
