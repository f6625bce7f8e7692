// Package shim is the task service of berth-shim-runc-v2: the shim v2 task
// API (containerd.task.v2.Task, and the identical v3) over an OCI runtime
// binary, for the tasks of one namespace. The runtime is runc unless the
// task's runtime options say otherwise (package runtimeopts): crun through
// runc's BinaryName option, gVisor's runsc through gVisor's options
// (io.containerd.runsc.v1), whatever runtime name the shim was started for.
//
// A task is created from a bundle the daemon prepared (config.json, an
// empty or ready rootfs/) and the rootfs mounts of its Create request,
// which the shim mounts on bundle/rootfs and unmounts at Delete. The
// processes' stdio are the FIFOs, file:// logs or binary:// logging
// binaries the daemon names (package stdio).
//
// The shim is the subreaper of every process it starts (package reaper):
// Exits of reaped processes come in on the channel given to New, are
// matched to processes by pid, and each is published as /tasks/exit to the
// daemon (package publisher) before Wait returns. The memory cgroup of each
// task's init is watched from Create to Delete (package oom) and each OOM
// kill in it is published as /tasks/oom. Events follow the order the shim
// v2 protocol requires: /tasks/create, /tasks/start, /tasks/exec-added,
// /tasks/exec-started, the execs' /tasks/exit before the init's (and a
// /tasks/oom for the kill that ended the init before its exit), then
// /tasks/delete.
//
// Errors are errdefs classes; the ttrpc layer (RegisterTTRPC) maps them to
// gRPC codes once, as the daemon expects.
package shim

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/berth-dev/berth/runtime/shim/oom"
	"github.com/berth-dev/berth/runtime/shim/runtimeopts"
	"github.com/berth-dev/berth/runtime/shim/stdio"
	eventstypes "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Event topics, as containerd names them.
const (
	TopicCreate      = "/tasks/create"
	TopicStart       = "/tasks/start"
	TopicExit        = "/tasks/exit"
	TopicDelete      = "/tasks/delete"
	TopicExecAdded   = "/tasks/exec-added"
	TopicExecStarted = "/tasks/exec-started"
	TopicPaused      = "/tasks/paused"
	TopicResumed     = "/tasks/resumed"
	TopicOOM         = "/tasks/oom"
)

// Publisher sends an event to the daemon; it must not block.
type Publisher interface {
	Publish(topic string, event proto.Message) error
}

// Config is what a Service needs from the shim process.
type Config struct {
	// Namespace of the shim's tasks; runc state is kept per namespace.
	Namespace string
	// RuncRoot is the parent of runc's state directories unless the
	// runtime options name a Root. Default DefaultRuncRoot.
	RuncRoot string
	// Publisher receives the task events. Required.
	Publisher Publisher
	// Exits are the exits of reaped processes not started through go-runc
	// (reaper.Reaper.Exits). Required.
	Exits <-chan runc.Exit
	// Started, if set, is called in a goroutine after a task's init
	// process has started (the shim's busy start-up is over then).
	Started func()
	// Shutdown is called, once, when the daemon asks the shim to go and no
	// task is left. Default: nothing.
	Shutdown func()
	// OutputDrain is how long an exited process's output may take to reach
	// its FIFOs before its exit is published. Default 2s.
	OutputDrain time.Duration
	// Errorf hears of failures that no request returns (publishing, exit
	// handling). Default: dropped.
	Errorf func(format string, args ...any)
}

// Service implements the v2 task API.
type Service struct {
	cfg Config

	mu         sync.Mutex
	containers map[string]*container
	creating   map[string]bool
	byPid      map[int]*process
	starting   int               // Create and Start calls between runc and reading the pid
	early      map[int]runc.Exit // exits reaped while starting > 0 that matched no process

	shutdownOnce sync.Once
}

var _ taskapi.TaskService = (*Service)(nil)

// New returns a Service and starts its exit loop.
func New(cfg Config) *Service {
	if cfg.RuncRoot == "" {
		cfg.RuncRoot = DefaultRuncRoot
	}
	if cfg.OutputDrain == 0 {
		cfg.OutputDrain = 2 * time.Second
	}
	if cfg.Errorf == nil {
		cfg.Errorf = func(string, ...any) {}
	}
	if cfg.Shutdown == nil {
		cfg.Shutdown = func() {}
	}
	s := &Service{
		cfg:        cfg,
		containers: map[string]*container{},
		creating:   map[string]bool{},
		byPid:      map[int]*process{},
		early:      map[int]runc.Exit{},
	}
	go s.exitLoop()
	return s
}

func (s *Service) publish(topic string, event proto.Message) {
	if err := s.cfg.Publisher.Publish(topic, event); err != nil {
		s.cfg.Errorf("publish %s: %v", topic, err)
	}
}

func (s *Service) container(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, fmt.Errorf("task %q in shim: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

func (s *Service) process(id, execID string) (*process, error) {
	c, err := s.container(id)
	if err != nil {
		return nil, err
	}
	return c.exec(execID)
}

// reserve claims id for a Create in progress.
func (s *Service) reserve(id string) error {
	if id == "" {
		return fmt.Errorf("create: task id is empty: %w", errdefs.ErrInvalidArgument)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.containers[id]; ok || s.creating[id] {
		return fmt.Errorf("task %q in shim: %w", id, errdefs.ErrAlreadyExists)
	}
	s.creating[id] = true
	return nil
}

// Create mounts the rootfs, creates the runc container with its init
// process waiting for Start, and connects its stdio.
func (s *Service) Create(ctx context.Context, req *taskapi.CreateTaskRequest) (_ *taskapi.CreateTaskResponse, retErr error) {
	if err := s.reserve(req.ID); err != nil {
		return nil, err
	}
	defer func() {
		s.mu.Lock()
		delete(s.creating, req.ID)
		s.mu.Unlock()
	}()
	if req.Checkpoint != "" {
		return nil, fmt.Errorf("create task %q from checkpoint: %w", req.ID, errdefs.ErrNotImplemented)
	}
	c, err := s.newContainer(req)
	if err != nil {
		return nil, err
	}
	c.init.startMu.Lock()
	defer c.init.startMu.Unlock()
	defer func() {
		if retErr != nil {
			s.abandon(c)
		}
	}()
	if err := s.createInit(ctx, c); err != nil {
		return nil, err
	}
	pid, _, _, _ := c.init.state()
	c.oom = s.watchOOM(c, pid)
	s.mu.Lock()
	s.containers[c.id] = c
	s.mu.Unlock()
	s.publish(TopicCreate, &eventstypes.TaskCreate{
		ContainerID: c.id,
		Bundle:      c.bundle,
		Rootfs:      req.Rootfs,
		IO:          &eventstypes.TaskIO{Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr, Terminal: req.Terminal},
		Pid:         uint32(pid),
	})
	return &taskapi.CreateTaskResponse{Pid: uint32(pid)}, nil
}

// newContainer prepares a task: options, runc client, rootfs.
func (s *Service) newContainer(req *taskapi.CreateTaskRequest) (*container, error) {
	bundle, err := filepath.Abs(req.Bundle)
	if err != nil || req.Bundle == "" {
		return nil, fmt.Errorf("create task %q: bundle %q: %w", req.ID, req.Bundle, errdefs.ErrInvalidArgument)
	}
	opts, err := runtimeopts.Decode(req.Options)
	if err != nil {
		return nil, fmt.Errorf("create task %q: %w", req.ID, err)
	}
	if err := writeOptions(bundle, opts); err != nil {
		return nil, fmt.Errorf("create task %q: %w", req.ID, err)
	}
	mounts, err := mountRootfs(bundle, req.Rootfs)
	if err != nil {
		return nil, fmt.Errorf("create task %q: %w", req.ID, err)
	}
	c := &container{
		id:          req.ID,
		bundle:      bundle,
		runc:        newRunc(s.cfg.RuncRoot, s.cfg.Namespace, bundle, opts),
		rootfs:      mounts,
		sharedPidNS: sharesPidNS(bundle),
		execs:       map[string]*process{},
	}
	cfg := stdio.Config{
		Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr, Terminal: req.Terminal,
		ID: req.ID, Namespace: s.cfg.Namespace,
	}
	c.init = newProcess(c, "", cfg, nil)
	c.init.ioUID, c.init.ioGID = int(opts.IoUID), int(opts.IoGID)
	c.noPivot, c.noNewKeyring = opts.NoPivotRoot, opts.NoNewKeyring
	return c, nil
}

// watchOOM follows the memory cgroup of the task's init process, whose OOM
// kills become /tasks/oom events. A task whose cgroup cannot be watched
// (no memory controller, say) runs without them.
func (s *Service) watchOOM(c *container, pid int) *oom.Watcher {
	w, err := oom.Watch(pid, func() {
		s.publish(TopicOOM, &eventstypes.TaskOOM{ContainerID: c.id})
	})
	if err != nil {
		s.cfg.Errorf("task %q: no OOM events: %v", c.id, err)
		return nil
	}
	return w
}

// abandon undoes a Create that failed after newContainer.
func (s *Service) abandon(c *container) {
	ctx := context.Background()
	if c.oom != nil {
		_ = c.oom.Close()
	}
	if pid, _, _, _ := c.init.state(); pid > 0 {
		s.mu.Lock()
		delete(s.byPid, pid)
		s.mu.Unlock()
	}
	_ = c.runc.Delete(ctx, c.id, &runc.DeleteOpts{Force: true})
	c.init.closeStreams(0)
	if err := unmountRootfs(c.bundle); err != nil {
		s.cfg.Errorf("abandon task %q: %v", c.id, err)
	}
}

// createInit runs runc create for the init process.
func (s *Service) createInit(ctx context.Context, c *container) error {
	p := c.init
	pidFile := filepath.Join(c.bundle, initPidFile)
	launch := func(o launchIO) error {
		err := c.runc.Create(context.WithoutCancel(ctx), c.id, c.bundle, &runc.CreateOpts{
			IO:            o.io,
			PidFile:       pidFile,
			ConsoleSocket: o.console(),
			NoPivot:       c.noPivot,
			NoNewKeyring:  c.noNewKeyring,
		})
		if err != nil {
			return runcError(err, c.runc, fmt.Sprintf("create task %q", c.id))
		}
		return nil
	}
	return s.startProcess(p, pidFile, task.Status_CREATED, launch)
}

// Start starts the init process (runc start) or an exec (runc exec).
func (s *Service) Start(ctx context.Context, req *taskapi.StartRequest) (*taskapi.StartResponse, error) {
	c, err := s.container(req.ID)
	if err != nil {
		return nil, err
	}
	p, err := c.exec(req.ExecID)
	if err != nil {
		return nil, err
	}
	if _, status, _, _ := p.state(); status != task.Status_CREATED {
		return nil, fmt.Errorf("start %s: it is %s: %w", p.name(), status, errdefs.ErrFailedPrecondition)
	}
	p.startMu.Lock()
	defer p.startMu.Unlock()
	if req.ExecID != "" {
		return s.startExec(ctx, c, p)
	}
	if err := c.runc.Start(context.WithoutCancel(ctx), c.id); err != nil {
		return nil, runcError(err, c.runc, fmt.Sprintf("start task %q", c.id))
	}
	p.setStatus(task.Status_RUNNING)
	pid, _, _, _ := p.state()
	s.publish(TopicStart, &eventstypes.TaskStart{ContainerID: c.id, Pid: uint32(pid)})
	if s.cfg.Started != nil {
		go s.cfg.Started()
	}
	return &taskapi.StartResponse{Pid: uint32(pid)}, nil
}

// State reports a process as the daemon's tasks service shows it.
func (s *Service) State(ctx context.Context, req *taskapi.StateRequest) (*taskapi.StateResponse, error) {
	p, err := s.process(req.ID, req.ExecID)
	if err != nil {
		return nil, err
	}
	pid, status, exitStatus, exitedAt := p.state()
	resp := &taskapi.StateResponse{
		ID:         p.eventID(),
		Bundle:     p.container.bundle,
		Pid:        uint32(pid),
		Status:     status,
		Stdin:      p.stdio.Stdin,
		Stdout:     p.stdio.Stdout,
		Stderr:     p.stdio.Stderr,
		Terminal:   p.stdio.Terminal,
		ExitStatus: uint32(exitStatus),
		ExecID:     req.ExecID,
	}
	if status == task.Status_STOPPED {
		resp.ExitedAt = timestamppb.New(exitedAt)
	}
	return resp, nil
}

// Wait blocks until the process has exited and its exit is published.
func (s *Service) Wait(ctx context.Context, req *taskapi.WaitRequest) (*taskapi.WaitResponse, error) {
	p, err := s.process(req.ID, req.ExecID)
	if err != nil {
		return nil, err
	}
	if err := p.wait(ctx); err != nil {
		return nil, err
	}
	_, _, exitStatus, exitedAt := p.state()
	return &taskapi.WaitResponse{ExitStatus: uint32(exitStatus), ExitedAt: timestamppb.New(exitedAt)}, nil
}

// Kill signals the init process through runc (all of the container's
// processes with All), or an exec directly.
func (s *Service) Kill(ctx context.Context, req *taskapi.KillRequest) (*emptypb.Empty, error) {
	c, err := s.container(req.ID)
	if err != nil {
		return nil, err
	}
	p, err := c.exec(req.ExecID)
	if err != nil {
		return nil, err
	}
	pid, err := p.running()
	if err != nil {
		return nil, err
	}
	if req.ExecID != "" {
		if err := killPid(pid, int(req.Signal)); err != nil {
			return nil, fmt.Errorf("kill %s: %w", p.name(), err)
		}
		return &emptypb.Empty{}, nil
	}
	if err := c.runc.Kill(ctx, c.id, int(req.Signal), &runc.KillOpts{All: req.All}); err != nil {
		if _, status, _, _ := p.state(); status == task.Status_STOPPED {
			return nil, fmt.Errorf("kill %s: process already finished: %w", p.name(), errdefs.ErrNotFound)
		}
		return nil, runcError(err, c.runc, fmt.Sprintf("kill %s", p.name()))
	}
	return &emptypb.Empty{}, nil
}

// Delete removes a stopped (or never started) process; for the init
// process, the runc container and the rootfs mounts too.
func (s *Service) Delete(ctx context.Context, req *taskapi.DeleteRequest) (*taskapi.DeleteResponse, error) {
	c, err := s.container(req.ID)
	if err != nil {
		return nil, err
	}
	p, err := c.exec(req.ExecID)
	if err != nil {
		return nil, err
	}
	if _, status, _, _ := p.state(); status != task.Status_STOPPED && status != task.Status_CREATED {
		return nil, fmt.Errorf("delete %s: it is %s: %w", p.name(), status, errdefs.ErrFailedPrecondition)
	}
	if req.ExecID != "" {
		c.mu.Lock()
		delete(c.execs, req.ExecID)
		c.mu.Unlock()
		p.finish()
		p.closeStreams(0)
		return deleteResponse(p), nil
	}
	if err := s.deleteInit(ctx, c); err != nil {
		return nil, err
	}
	resp := deleteResponse(p)
	s.publish(TopicDelete, &eventstypes.TaskDelete{
		ContainerID: c.id, ID: c.id, Pid: resp.Pid, ExitStatus: resp.ExitStatus, ExitedAt: resp.ExitedAt,
	})
	return resp, nil
}

// deleteInit deletes the runc container. A created init never ran: it is
// killed, recorded as killed, and no exit is published for it.
func (s *Service) deleteInit(ctx context.Context, c *container) error {
	p := c.init
	pid, status, _, _ := p.state()
	if status == task.Status_CREATED {
		s.mu.Lock()
		delete(s.byPid, pid)
		s.mu.Unlock()
		p.setExited(128+9, time.Now())
	}
	if err := c.runc.Delete(context.WithoutCancel(ctx), c.id, &runc.DeleteOpts{Force: true}); err != nil && !runcGone(c) {
		return runcError(err, c.runc, fmt.Sprintf("delete task %q", c.id))
	}
	if c.oom != nil {
		_ = c.oom.Close()
	}
	p.finish()
	p.closeStreams(0)
	if err := unmountRootfs(c.bundle); err != nil {
		return fmt.Errorf("delete task %q: %w", c.id, err)
	}
	_ = os.Remove(filepath.Join(c.bundle, initPidFile))
	s.mu.Lock()
	delete(s.containers, c.id)
	s.mu.Unlock()
	return nil
}

// runcGone reports whether runc no longer knows the container, which makes
// a failed delete a success.
func runcGone(c *container) bool {
	_, err := c.runc.State(context.Background(), c.id)
	return err != nil && isNotExistMessage(err)
}

func deleteResponse(p *process) *taskapi.DeleteResponse {
	pid, _, exitStatus, exitedAt := p.state()
	resp := &taskapi.DeleteResponse{Pid: uint32(pid), ExitStatus: uint32(exitStatus)}
	if !exitedAt.IsZero() {
		resp.ExitedAt = timestamppb.New(exitedAt)
	}
	return resp
}
