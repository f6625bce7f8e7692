package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"time"

	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/runtime/manager"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The pause processes and the containers run as tasks of the shim
// manager, which berthd holds in-process: no gRPC round trip through the
// Tasks service. A task is created and started by StartContainer (or
// RunPodSandbox), followed by a goroutine waiting on the shim for its
// exit, and deleted once it exited, as containerd's CRI does: a stopped
// container has no task, only its recorded status.

// taskOptions are what a task is created from.
type taskOptions struct {
	// handler is the runtime handler name (the manager resolves it).
	handler string
	spec    *specs.Spec
	rootfs  []mount.Mount
	stdout  string
	stderr  string
	stdin   string
	tty     bool
}

// startTask creates task id and starts it; on failure nothing is left.
func (s *Service) startTask(ctx context.Context, id string, o taskOptions) (*manager.Task, error) {
	spec, err := json.Marshal(o.spec)
	if err != nil {
		return nil, fmt.Errorf("encode the runtime spec of %q: %w", id, err)
	}
	rootfs := make([]*types.Mount, len(o.rootfs))
	for i, m := range o.rootfs {
		rootfs[i] = &types.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options}
	}
	t, err := s.deps.Tasks.Create(ctx, id, manager.CreateOpts{
		Runtime: o.handler, Spec: spec, Rootfs: rootfs,
		Stdin: o.stdin, Stdout: o.stdout, Stderr: o.stderr, Terminal: o.tty,
	})
	if err != nil {
		return nil, err
	}
	if _, err := t.Client().Start(t.ShimContext(ctx), &taskapi.StartRequest{ID: id}); err != nil {
		s.deleteTask(context.WithoutCancel(ctx), id)
		return nil, fmt.Errorf("start task %q: %w", id, manager.ShimError(err))
	}
	return t, nil
}

// exit is how a task ended.
type exit struct {
	code uint32
	at   time.Time
	// lost is true when the shim went away without telling.
	lost bool
}

// waitTask follows task t in the background, whatever becomes of ctx,
// and calls onExit once its init process is gone. Once berthd is
// stopping it does not call onExit: the task lives on, and the next
// berthd follows it.
func (s *Service) waitTask(ctx context.Context, t *manager.Task, onExit func(exit)) {
	ctx = context.WithoutCancel(ctx)
	go func() {
		resp, err := t.Client().Wait(t.ShimContext(ctx), &taskapi.WaitRequest{ID: t.ID})
		if s.stopping.Load() {
			return
		}
		if err != nil {
			log.G(ctx).Warn("CRI: lost the shim of a task", "id", t.ID, "error", manager.ShimError(err))
			onExit(exit{code: unknownExitCode, at: time.Now(), lost: true})
			return
		}
		onExit(exit{code: resp.GetExitStatus(), at: resp.GetExitedAt().AsTime()})
	}()
}

// unknownExitCode is the exit code of a process whose end nobody saw.
const unknownExitCode = 255

// killTask sends sig to task id's init process (all of its processes with
// all). A task that is gone or already exited is no error.
func (s *Service) killTask(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	t, err := s.deps.Tasks.Get(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	_, err = t.Client().Kill(t.ShimContext(ctx), &taskapi.KillRequest{ID: id, Signal: uint32(sig), All: all})
	if err = manager.ShimError(err); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsUnavailable(err) {
		return fmt.Errorf("signal %s to task %q: %w", unix.SignalName(sig), id, err)
	}
	return nil
}

// deleteTask deletes task id (its shim and bundle); a missing task is no
// error, any other failure is logged: the caller has nothing better to do.
func (s *Service) deleteTask(ctx context.Context, id string) {
	if _, err := s.deps.Tasks.Delete(ctx, id); err != nil && !errdefs.IsNotFound(err) {
		log.G(ctx).Warn("CRI: delete task", "id", id, "error", err)
	}
}
