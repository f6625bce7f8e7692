package shim

import (
	"context"
	"errors"
	"fmt"
	"strings"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// exitLoop matches each reaped exit to its process.
func (s *Service) exitLoop() {
	for e := range s.cfg.Exits {
		s.onExit(e)
	}
}

// beginStart opens a window in which exits of unknown pids are kept: the
// process being started may exit before its pid is read from runc's pid
// file.
func (s *Service) beginStart() {
	s.mu.Lock()
	s.starting++
	s.mu.Unlock()
}

// endStart closes the window and registers p under pid, unless pid's exit
// came first; then it returns that exit for the caller to handle. p nil
// (the start failed) only closes the window.
func (s *Service) endStart(p *process, pid int) (runc.Exit, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.starting--
	e, exited := s.early[pid]
	if exited {
		delete(s.early, pid)
	} else if p != nil {
		s.byPid[pid] = p
	}
	if s.starting == 0 {
		clear(s.early)
	}
	return e, exited && p != nil
}

func (s *Service) onExit(e runc.Exit) {
	s.mu.Lock()
	p, ok := s.byPid[e.Pid]
	if ok {
		delete(s.byPid, e.Pid)
	} else if s.starting > 0 {
		s.early[e.Pid] = e
	}
	s.mu.Unlock()
	if ok {
		s.processExited(p, e)
	}
}

// processExited records p's exit and publishes it in the background: its
// output may still be on its way, and an init's exit waits for its execs'.
func (s *Service) processExited(p *process, e runc.Exit) {
	if p.setExited(e.Status, e.Timestamp) {
		go s.finishExit(p)
	}
}

func (s *Service) finishExit(p *process) {
	p.startMu.Lock()
	p.startMu.Unlock() //nolint:staticcheck // only waits for the start event
	c := p.container
	if p.id == "" {
		if c.oom != nil {
			c.oom.Check() // an OOM kill is news before the exit it caused
		}
		if c.sharedPidNS {
			// Nothing else ends the container's other processes.
			_ = c.runc.Kill(context.Background(), c.id, int(unix.SIGKILL), &runc.KillOpts{All: true})
		}
		c.mu.Lock()
		c.initExited = true
		publish := c.runningExecs == 0 && !c.initPublished
		c.initPublished = c.initPublished || publish
		c.mu.Unlock()
		if publish {
			s.publishExit(p)
		}
		return
	}
	s.publishExit(p)
	c.mu.Lock()
	c.runningExecs--
	publishInit := c.runningExecs == 0 && c.initExited && !c.initPublished
	c.initPublished = c.initPublished || publishInit
	c.mu.Unlock()
	if publishInit {
		s.publishExit(c.init)
	}
}

// publishExit lets p's last output through, publishes /tasks/exit and
// releases the waiters.
func (s *Service) publishExit(p *process) {
	p.closeStreams(s.cfg.OutputDrain)
	pid, _, status, at := p.state()
	s.publish(TopicExit, &eventstypes.TaskExit{
		ContainerID: p.container.id,
		ID:          p.eventID(),
		Pid:         uint32(pid),
		ExitStatus:  uint32(status),
		ExitedAt:    timestamppb.New(at),
	})
	p.finish()
}

// killPid signals an exec process directly, as runc has no handle on it.
func killPid(pid, sig int) error {
	if err := unix.Kill(pid, unix.Signal(sig)); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("process %d already finished: %w", pid, errdefs.ErrNotFound)
		}
		return fmt.Errorf("signal %d to pid %d: %w", sig, pid, err)
	}
	return nil
}

// isNotExistMessage recognizes runc's answer about an unknown container.
func isNotExistMessage(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "does not exist") || strings.Contains(msg, "not found")
}
