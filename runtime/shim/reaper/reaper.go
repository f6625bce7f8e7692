// Package reaper collects the exit status of every child of the shim.
//
// The shim is a child subreaper (prctl PR_SET_CHILD_SUBREAPER): container
// processes whose runc parent exits are re-parented to it. One loop, run on
// each SIGCHLD, reaps every exited child with wait4(-1) and hands each exit
// either to the runc command that waits for it (the Reaper is go-runc's
// ProcessMonitor) or, for any other pid, to the shim's queue of container
// process exits (Exits).
//
// Lifecycle: New, then SetSubreaper once in the server process, then Reap on
// every SIGCHLD. Commands are started through Start/StartLocked and waited
// with Wait; nothing in the process may call exec.Cmd.Wait on a child it did
// not start through the Reaper, since the loop would steal its exit.
package reaper

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"sync"
	"time"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"
)

// Reaper reaps children and dispatches their exits.
type Reaper struct {
	mu      sync.Mutex
	waiters map[int]chan runc.Exit // commands started through the Reaper

	queue  []runc.Exit // exits nobody waits for, not yet taken by Exits
	notify chan struct{}
	exits  chan runc.Exit
}

// New returns a Reaper whose unclaimed exits are delivered on Exits.
func New() *Reaper {
	r := &Reaper{
		waiters: map[int]chan runc.Exit{},
		notify:  make(chan struct{}, 1),
		exits:   make(chan runc.Exit),
	}
	go r.pump()
	return r
}

// SetSubreaper makes the calling process the reaper of its orphaned
// descendants.
func SetSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set child subreaper: %w", err)
	}
	return nil
}

// Exits delivers, in reaping order, the exits of children that were not
// started through the Reaper: container and exec processes. The queue behind
// it is unbounded so that reaping never waits for the consumer, which may
// itself be waiting for a runc command the Reaper has to reap.
func (r *Reaper) Exits() <-chan runc.Exit { return r.exits }

// Reap collects every child that has exited so far. Call it on each SIGCHLD:
// signals coalesce, so one call may reap several children.
func (r *Reaper) Reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		r.dispatch(runc.Exit{Pid: pid, Status: ExitStatus(ws), Timestamp: time.Now()})
	}
}

// ExitStatus is the shell's convention for a wait status: the exit code, or
// 128 plus the signal that killed the process.
func ExitStatus(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func (r *Reaper) dispatch(e runc.Exit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ch, ok := r.waiters[e.Pid]; ok {
		delete(r.waiters, e.Pid)
		ch <- e // buffered, never blocks
		return
	}
	r.queue = append(r.queue, e)
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// pump moves queued exits to the Exits channel.
func (r *Reaper) pump() {
	for range r.notify {
		for {
			r.mu.Lock()
			if len(r.queue) == 0 {
				r.mu.Unlock()
				break
			}
			e := r.queue[0]
			r.queue = r.queue[1:]
			r.mu.Unlock()
			r.exits <- e
		}
	}
}

// Start starts c and returns the channel its exit will be sent on. The lock
// is held across the fork so that the child's exit, however early, is
// dispatched after its pid is registered.
func (r *Reaper) Start(c *exec.Cmd) (chan runc.Exit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := c.Start(); err != nil {
		return nil, err
	}
	ec := make(chan runc.Exit, 1)
	r.waiters[c.Process.Pid] = ec
	return ec, nil
}

// StartLocked is Start on a goroutine locked to its OS thread until the
// child exits, for children with a parent-death signal: the kernel sends it
// when the forking thread ends, not the process.
func (r *Reaper) StartLocked(c *exec.Cmd) (chan runc.Exit, error) {
	started := make(chan error, 1)
	out := make(chan runc.Exit, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		ec, err := r.Start(c)
		started <- err
		if err == nil {
			out <- <-ec
		}
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return out, nil
}

// Wait waits for the exit sent on ec and returns its status. c.Wait is still
// called, for its I/O goroutines; its error (the child is already reaped)
// is meaningless.
func (r *Reaper) Wait(c *exec.Cmd, ec chan runc.Exit) (int, error) {
	e := <-ec
	_ = c.Wait()
	return e.Status, nil
}
