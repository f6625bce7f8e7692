package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-dev/berth/runtime/shim/stdio"
	"github.com/berth-dev/berth/version"
	eventstypes "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Type URLs under which containerd clients send runtime-spec JSON.
const (
	processTypeURL   = "types.containerd.io/opencontainers/runtime-spec/1/Process"
	resourcesTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
)

// decodeSpec reads a runtime-spec struct sent as JSON in an Any. The type
// URL is matched by its tail, so that the prefix a client registered under
// does not matter.
func decodeSpec(a *anypb.Any, typeURL string, v any) error {
	if a == nil {
		return fmt.Errorf("missing %s: %w", typeURL, errdefs.ErrInvalidArgument)
	}
	_, want, _ := strings.Cut(typeURL, "/")
	if !strings.HasSuffix(a.GetTypeUrl(), want) {
		return fmt.Errorf("got %q, want %s: %w", a.GetTypeUrl(), typeURL, errdefs.ErrInvalidArgument)
	}
	if err := json.Unmarshal(a.GetValue(), v); err != nil {
		return fmt.Errorf("decode %s: %v: %w", a.GetTypeUrl(), err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Exec adds a process to a running task; Start runs it.
func (s *Service) Exec(ctx context.Context, req *taskapi.ExecProcessRequest) (*emptypb.Empty, error) {
	c, err := s.container(req.ID)
	if err != nil {
		return nil, err
	}
	if req.ExecID == "" || filepath.Base(req.ExecID) != req.ExecID || strings.HasPrefix(req.ExecID, ".") {
		return nil, fmt.Errorf("exec %q of task %q: invalid exec id: %w", req.ExecID, req.ID, errdefs.ErrInvalidArgument)
	}
	var spec specs.Process
	if err := decodeSpec(req.Spec, processTypeURL, &spec); err != nil {
		return nil, fmt.Errorf("exec %q of task %q: process spec: %w", req.ExecID, req.ID, err)
	}
	cfg := stdio.Config{
		Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr, Terminal: req.Terminal,
		ID: req.ExecID, Namespace: s.cfg.Namespace,
	}
	if err := stdio.Validate(cfg); err != nil {
		return nil, fmt.Errorf("exec %q of task %q: %w", req.ExecID, req.ID, err)
	}
	p := newProcess(c, req.ExecID, cfg, &spec)
	p.ioUID, p.ioGID = c.init.ioUID, c.init.ioGID
	c.mu.Lock()
	if _, ok := c.execs[req.ExecID]; ok {
		c.mu.Unlock()
		return nil, fmt.Errorf("exec %q of task %q: %w", req.ExecID, req.ID, errdefs.ErrAlreadyExists)
	}
	c.execs[req.ExecID] = p
	c.mu.Unlock()
	s.publish(TopicExecAdded, &eventstypes.TaskExecAdded{ContainerID: c.id, ExecID: req.ExecID})
	return &emptypb.Empty{}, nil
}

// Pids lists the task's processes (runc ps); execs carry their exec id.
func (s *Service) Pids(ctx context.Context, req *taskapi.PidsRequest) (*taskapi.PidsResponse, error) {
	c, err := s.container(req.ID)
	if err != nil {
		return nil, err
	}
	pids, err := c.runc.Ps(ctx, c.id)
	if err != nil {
		return nil, runcError(err, c.runc, fmt.Sprintf("list processes of task %q", c.id))
	}
	execs := c.execIDs()
	resp := &taskapi.PidsResponse{}
	for _, pid := range pids {
		info := &task.ProcessInfo{Pid: uint32(pid)}
		if id, ok := execs[pid]; ok {
			a, err := typeurl.MarshalAnyToProto(&options.ProcessDetails{ExecID: id})
			if err != nil {
				return nil, fmt.Errorf("process details of exec %q: %w", id, err)
			}
			info.Info = a
		}
		resp.Processes = append(resp.Processes, info)
	}
	return resp, nil
}

// ResizePty resizes a process's terminal.
func (s *Service) ResizePty(ctx context.Context, req *taskapi.ResizePtyRequest) (*emptypb.Empty, error) {
	p, err := s.process(req.ID, req.ExecID)
	if err != nil {
		return nil, err
	}
	streams := p.getStreams()
	if streams == nil {
		return nil, fmt.Errorf("resize %s: not started: %w", p.name(), errdefs.ErrFailedPrecondition)
	}
	if err := streams.Resize(uint16(req.Width), uint16(req.Height)); err != nil {
		return nil, fmt.Errorf("resize %s: %w", p.name(), err)
	}
	return &emptypb.Empty{}, nil
}

// CloseIO closes a process's stdin.
func (s *Service) CloseIO(ctx context.Context, req *taskapi.CloseIORequest) (*emptypb.Empty, error) {
	p, err := s.process(req.ID, req.ExecID)
	if err != nil {
		return nil, err
	}
	if streams := p.getStreams(); streams != nil && req.Stdin {
		if err := streams.CloseStdin(); err != nil {
			return nil, fmt.Errorf("close stdin of %s: %w", p.name(), err)
		}
	}
	return &emptypb.Empty{}, nil
}

// Pause freezes the task (runc pause).
func (s *Service) Pause(ctx context.Context, req *taskapi.PauseRequest) (*emptypb.Empty, error) {
	return s.freeze(ctx, req.ID, true)
}

// Resume thaws the task (runc resume).
func (s *Service) Resume(ctx context.Context, req *taskapi.ResumeRequest) (*emptypb.Empty, error) {
	return s.freeze(ctx, req.ID, false)
}

func (s *Service) freeze(ctx context.Context, id string, pause bool) (*emptypb.Empty, error) {
	c, err := s.container(id)
	if err != nil {
		return nil, err
	}
	want, from := task.Status_PAUSED, task.Status_RUNNING
	verb, run, topic := "pause", c.runc.Pause, TopicPaused
	if !pause {
		want, from = task.Status_RUNNING, task.Status_PAUSED
		verb, run, topic = "resume", c.runc.Resume, TopicResumed
	}
	if _, status, _, _ := c.init.state(); status != from {
		return nil, fmt.Errorf("%s task %q: it is %s: %w", verb, id, status, errdefs.ErrFailedPrecondition)
	}
	if err := run(ctx, c.id); err != nil {
		return nil, runcError(err, c.runc, fmt.Sprintf("%s task %q", verb, id))
	}
	c.init.setStatus(want)
	if pause {
		s.publish(topic, &eventstypes.TaskPaused{ContainerID: id})
	} else {
		s.publish(topic, &eventstypes.TaskResumed{ContainerID: id})
	}
	return &emptypb.Empty{}, nil
}

// Update changes the task's resources (runc update); annotations are not
// runc's business and are ignored.
func (s *Service) Update(ctx context.Context, req *taskapi.UpdateTaskRequest) (*emptypb.Empty, error) {
	c, err := s.container(req.ID)
	if err != nil {
		return nil, err
	}
	var res specs.LinuxResources
	if err := decodeSpec(req.Resources, resourcesTypeURL, &res); err != nil {
		return nil, fmt.Errorf("update task %q: resources: %w", req.ID, err)
	}
	if err := c.runc.Update(ctx, c.id, &res); err != nil {
		return nil, runcError(err, c.runc, fmt.Sprintf("update task %q", req.ID))
	}
	return &emptypb.Empty{}, nil
}

// Checkpoint is not implemented: berth has no CRIU support yet.
func (s *Service) Checkpoint(ctx context.Context, req *taskapi.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, fmt.Errorf("checkpoint task %q: %w", req.ID, errdefs.ErrNotImplemented)
}

// Connect tells the daemon the shim's and the task's pids.
func (s *Service) Connect(ctx context.Context, req *taskapi.ConnectRequest) (*taskapi.ConnectResponse, error) {
	resp := &taskapi.ConnectResponse{ShimPid: uint32(os.Getpid()), Version: version.Version}
	if c, err := s.container(req.ID); err == nil {
		pid, _, _, _ := c.init.state()
		resp.TaskPid = uint32(pid)
	}
	return resp, nil
}

// Shutdown ends the shim once it has no task left (or at once with Now).
func (s *Service) Shutdown(ctx context.Context, req *taskapi.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	busy := len(s.containers) > 0 || len(s.creating) > 0
	s.mu.Unlock()
	if busy && !req.Now {
		return &emptypb.Empty{}, nil
	}
	s.shutdownOnce.Do(func() { go s.cfg.Shutdown() })
	return &emptypb.Empty{}, nil
}
