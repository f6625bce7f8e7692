package shim

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/berth-dev/berth/runtime/shim/stdio"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// process is the init process of a container or one of its execs.
//
// States: created (runc create / Exec request) → running (Start) ⇄ paused
// (init only) → stopped (its exit was reaped) → deleted (Delete removes it
// from its container). done closes once the exit is published, which is
// what Wait waits for.
type process struct {
	container *container
	id        string         // exec id; empty for the init process
	stdio     stdio.Config   // paths as the daemon gave them
	spec      *specs.Process // exec processes only
	ioUID     int            // owner of the stdio pipes
	ioGID     int

	// startMu is held from runc create/start/exec until the event saying so
	// is published; the exit is published only after taking it, so that
	// /tasks/exit never overtakes /tasks/create, /tasks/start or
	// /tasks/exec-started.
	startMu sync.Mutex

	mu         sync.Mutex
	pid        int
	status     task.Status
	exitStatus int
	exitedAt   time.Time
	streams    *stdio.Streams
	done       chan struct{}
	doneOnce   sync.Once
}

func newProcess(c *container, id string, cfg stdio.Config, spec *specs.Process) *process {
	return &process{
		container: c,
		id:        id,
		stdio:     cfg,
		spec:      spec,
		status:    task.Status_CREATED,
		done:      make(chan struct{}),
	}
}

// name says which process this is, for messages.
func (p *process) name() string {
	if p.id == "" {
		return fmt.Sprintf("task %q", p.container.id)
	}
	return fmt.Sprintf("exec %q of task %q", p.id, p.container.id)
}

// eventID is the process id events carry: the container id for init.
func (p *process) eventID() string {
	if p.id == "" {
		return p.container.id
	}
	return p.id
}

func (p *process) state() (pid int, status task.Status, exitStatus int, exitedAt time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid, p.status, p.exitStatus, p.exitedAt
}

func (p *process) setStatus(s task.Status) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status != task.Status_STOPPED {
		p.status = s
	}
}

func (p *process) setStarted(pid int, streams *stdio.Streams, status task.Status) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pid, p.streams, p.status = pid, streams, status
}

// setExited records the exit. It reports false if one was recorded already.
func (p *process) setExited(status int, at time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status == task.Status_STOPPED {
		return false
	}
	p.status, p.exitStatus, p.exitedAt = task.Status_STOPPED, status, at
	return true
}

// finish releases the waiters.
func (p *process) finish() {
	p.doneOnce.Do(func() { close(p.done) })
}

// wait blocks until the exit is published or ctx ends.
func (p *process) wait(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for %s: %w", p.name(), ctx.Err())
	}
}

// running returns the pid of a process that can take signals: started and
// not yet stopped.
func (p *process) running() (int, error) {
	pid, status, _, _ := p.state()
	switch status {
	case task.Status_STOPPED:
		return 0, fmt.Errorf("%s: process already finished: %w", p.name(), errdefs.ErrNotFound)
	case task.Status_CREATED:
		if p.id != "" {
			return 0, fmt.Errorf("%s: not started: %w", p.name(), errdefs.ErrFailedPrecondition)
		}
	}
	return pid, nil
}

func (p *process) getStreams() *stdio.Streams {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.streams
}

// closeStreams waits up to drain for the last output, then closes the
// process's stdio.
func (p *process) closeStreams(drain time.Duration) {
	s := p.getStreams()
	if s == nil {
		return
	}
	s.Wait(drain)
	_ = s.Close()
}
