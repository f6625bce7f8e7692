// Package tasks serves containerd.services.tasks.v1.Tasks: it reads the
// container record a task is made from and drives the task's shim through
// runtime/manager. Shim errors (gRPC statuses) become errdefs classes here,
// and the daemon maps them back to codes at its edge.
package tasks

import (
	"context"
	"fmt"
	"time"

	"github.com/berth-dev/berth/containers"
	"github.com/berth-dev/berth/filters"
	"github.com/berth-dev/berth/runtime/manager"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	api "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Service is the gRPC service.
type Service struct {
	api.UnimplementedTasksServer
	containers containers.Store
	tasks      *manager.Manager
}

// New returns the service over the container records and the shim manager.
func New(cs containers.Store, m *manager.Manager) *Service {
	return &Service{containers: cs, tasks: m}
}

// Register adds the service to s.
func (s *Service) Register(srv *grpc.Server) { api.RegisterTasksServer(srv, s) }

func (s *Service) Create(ctx context.Context, req *api.CreateTaskRequest) (*api.CreateTaskResponse, error) {
	if req.Checkpoint != nil {
		return nil, fmt.Errorf("create task %q from a checkpoint: %w", req.ContainerID, errdefs.ErrNotImplemented)
	}
	c, err := s.containers.Get(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	if c.Spec == nil {
		return nil, fmt.Errorf("container %q has no spec: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	t, err := s.tasks.Create(ctx, c.ID, manager.CreateOpts{
		Runtime: c.Runtime.Name, RuntimeOptions: toAny(c.Runtime.Options), Spec: c.Spec.GetValue(),
		Rootfs: req.Rootfs, Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr,
		Terminal: req.Terminal, Options: req.Options,
	})
	if err != nil {
		return nil, err
	}
	return &api.CreateTaskResponse{ContainerID: c.ID, Pid: t.Pid}, nil
}

func (s *Service) Start(ctx context.Context, req *api.StartRequest) (*api.StartResponse, error) {
	t, sctx, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	resp, err := t.Client().Start(sctx, &taskapi.StartRequest{ID: t.ID, ExecID: req.ExecID})
	if err != nil {
		return nil, shimErr("start", t, req.ExecID, err)
	}
	return &api.StartResponse{Pid: resp.Pid}, nil
}

func (s *Service) Delete(ctx context.Context, req *api.DeleteTaskRequest) (*api.DeleteResponse, error) {
	resp, err := s.tasks.Delete(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	return &api.DeleteResponse{ID: req.ContainerID, Pid: resp.Pid, ExitStatus: resp.ExitStatus, ExitedAt: resp.ExitedAt}, nil
}

func (s *Service) DeleteProcess(ctx context.Context, req *api.DeleteProcessRequest) (*api.DeleteResponse, error) {
	if req.ExecID == "" {
		return s.Delete(ctx, &api.DeleteTaskRequest{ContainerID: req.ContainerID})
	}
	t, sctx, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	resp, err := t.Client().Delete(sctx, &taskapi.DeleteRequest{ID: t.ID, ExecID: req.ExecID})
	if err != nil {
		return nil, shimErr("delete", t, req.ExecID, err)
	}
	return &api.DeleteResponse{ID: req.ExecID, Pid: resp.Pid, ExitStatus: resp.ExitStatus, ExitedAt: resp.ExitedAt}, nil
}

func (s *Service) Get(ctx context.Context, req *api.GetRequest) (*api.GetResponse, error) {
	t, _, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	p, err := state(ctx, t, req.ExecID)
	if err != nil {
		return nil, err
	}
	return &api.GetResponse{Process: p}, nil
}

func (s *Service) List(ctx context.Context, req *api.ListTasksRequest) (*api.ListTasksResponse, error) {
	ts, err := s.tasks.List(ctx)
	if err != nil {
		return nil, err
	}
	resp := &api.ListTasksResponse{}
	for _, t := range ts {
		p, err := state(ctx, t, "")
		if err != nil {
			// A task whose shim died is listed as unknown, as by containerd.
			p = &task.Process{ContainerID: t.ID, ID: t.ID, Pid: t.Pid, Status: task.Status_UNKNOWN}
		}
		if req.Filter == "" || matches([]string{req.Filter}, p) {
			resp.Tasks = append(resp.Tasks, p)
		}
	}
	return resp, nil
}

func (s *Service) Kill(ctx context.Context, req *api.KillRequest) (*emptypb.Empty, error) {
	t, sctx, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	_, err = t.Client().Kill(sctx, &taskapi.KillRequest{ID: t.ID, ExecID: req.ExecID, Signal: req.Signal, All: req.All})
	return empty(shimErr("kill", t, req.ExecID, err))
}

func (s *Service) Exec(ctx context.Context, req *api.ExecProcessRequest) (*emptypb.Empty, error) {
	if req.ExecID == "" {
		return nil, fmt.Errorf("exec in task %q: exec id required: %w", req.ContainerID, errdefs.ErrInvalidArgument)
	}
	t, sctx, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	_, err = t.Client().Exec(sctx, &taskapi.ExecProcessRequest{ID: t.ID, ExecID: req.ExecID, Terminal: req.Terminal,
		Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr, Spec: req.Spec})
	return empty(shimErr("exec", t, req.ExecID, err))
}

func (s *Service) ResizePty(ctx context.Context, req *api.ResizePtyRequest) (*emptypb.Empty, error) {
	t, sctx, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	_, err = t.Client().ResizePty(sctx, &taskapi.ResizePtyRequest{ID: t.ID, ExecID: req.ExecID, Width: req.Width, Height: req.Height})
	return empty(shimErr("resize pty of", t, req.ExecID, err))
}

func (s *Service) CloseIO(ctx context.Context, req *api.CloseIORequest) (*emptypb.Empty, error) {
	t, sctx, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	_, err = t.Client().CloseIO(sctx, &taskapi.CloseIORequest{ID: t.ID, ExecID: req.ExecID, Stdin: req.Stdin})
	return empty(shimErr("close io of", t, req.ExecID, err))
}

func (s *Service) Pause(ctx context.Context, req *api.PauseTaskRequest) (*emptypb.Empty, error) {
	t, sctx, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	_, err = t.Client().Pause(sctx, &taskapi.PauseRequest{ID: t.ID})
	return empty(shimErr("pause", t, "", err))
}

func (s *Service) Resume(ctx context.Context, req *api.ResumeTaskRequest) (*emptypb.Empty, error) {
	t, sctx, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	_, err = t.Client().Resume(sctx, &taskapi.ResumeRequest{ID: t.ID})
	return empty(shimErr("resume", t, "", err))
}

func (s *Service) ListPids(ctx context.Context, req *api.ListPidsRequest) (*api.ListPidsResponse, error) {
	t, sctx, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	resp, err := t.Client().Pids(sctx, &taskapi.PidsRequest{ID: t.ID})
	if err != nil {
		return nil, shimErr("list pids of", t, "", err)
	}
	return &api.ListPidsResponse{Processes: resp.Processes}, nil
}

func (s *Service) Checkpoint(ctx context.Context, req *api.CheckpointTaskRequest) (*api.CheckpointTaskResponse, error) {
	return nil, fmt.Errorf("checkpoint task %q: %w", req.ContainerID, errdefs.ErrNotImplemented)
}

func (s *Service) Update(ctx context.Context, req *api.UpdateTaskRequest) (*emptypb.Empty, error) {
	t, sctx, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	_, err = t.Client().Update(sctx, &taskapi.UpdateTaskRequest{ID: t.ID, Resources: req.Resources, Annotations: req.Annotations})
	return empty(shimErr("update", t, "", err))
}

func (s *Service) Metrics(ctx context.Context, req *api.MetricsRequest) (*api.MetricsResponse, error) {
	ts, err := s.tasks.List(ctx)
	if err != nil {
		return nil, err
	}
	resp := &api.MetricsResponse{}
	for _, t := range ts {
		if !matches(req.Filters, &task.Process{ContainerID: t.ID, ID: t.ID}) {
			continue
		}
		stats, err := t.Client().Stats(t.ShimContext(ctx), &taskapi.StatsRequest{ID: t.ID})
		if err != nil {
			return nil, shimErr("stats of", t, "", err)
		}
		resp.Metrics = append(resp.Metrics, &types.Metric{ID: t.ID, Timestamp: timestamppb.New(time.Now()), Data: stats.Stats})
	}
	return resp, nil
}

func (s *Service) Wait(ctx context.Context, req *api.WaitRequest) (*api.WaitResponse, error) {
	t, sctx, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	resp, err := t.Client().Wait(sctx, &taskapi.WaitRequest{ID: t.ID, ExecID: req.ExecID})
	if err != nil {
		return nil, shimErr("wait for", t, req.ExecID, err)
	}
	return &api.WaitResponse{ExitStatus: resp.ExitStatus, ExitedAt: resp.ExitedAt}, nil
}

// task returns the task of container id and the context for its shim.
func (s *Service) task(ctx context.Context, id string) (*manager.Task, context.Context, error) {
	t, err := s.tasks.Get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	return t, t.ShimContext(ctx), nil
}

func state(ctx context.Context, t *manager.Task, execID string) (*task.Process, error) {
	st, err := t.Client().State(t.ShimContext(ctx), &taskapi.StateRequest{ID: t.ID, ExecID: execID})
	if err != nil {
		return nil, shimErr("get state of", t, execID, err)
	}
	id := t.ID
	if execID != "" {
		id = execID
	}
	return &task.Process{ContainerID: t.ID, ID: id, Pid: st.Pid, Status: st.Status, Stdin: st.Stdin, Stdout: st.Stdout,
		Stderr: st.Stderr, Terminal: st.Terminal, ExitStatus: st.ExitStatus, ExitedAt: st.ExitedAt}, nil
}

// matches applies containerd filters (id, container_id, status, pid) to p;
// a filter that does not parse matches nothing.
func matches(exprs []string, p *task.Process) bool {
	if len(exprs) == 0 {
		return true
	}
	filter, err := filters.Parse(exprs...)
	if err != nil {
		return false
	}
	return filter.Match(filters.AdaptorFunc(func(fp []string) (string, bool) {
		if len(fp) != 1 {
			return "", false
		}
		switch fp[0] {
		case "id":
			return p.ID, true
		case "container_id":
			return p.ContainerID, true
		case "status":
			return p.Status.String(), true
		case "pid":
			return fmt.Sprint(p.Pid), true
		}
		return "", false
	}))
}

func shimErr(op string, t *manager.Task, execID string, err error) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf("task %q", t.ID)
	if execID != "" {
		what = fmt.Sprintf("exec %q of task %q", execID, t.ID)
	}
	return fmt.Errorf("%s %s: %w", op, what, manager.ShimError(err))
}

func empty(err error) (*emptypb.Empty, error) {
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func toAny(a typeurl.Any) *anypb.Any {
	if a == nil {
		return nil
	}
	return &anypb.Any{TypeUrl: a.GetTypeUrl(), Value: a.GetValue()}
}
