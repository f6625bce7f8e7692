package shim

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berth-dev/berth/runtime/shim/stdio"
	eventstypes "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
)

// launchIO is what runc gets for a process's stdio: pipes, or a console
// socket on which it passes back the pty master.
type launchIO struct {
	io     runc.IO
	socket *runc.Socket
}

func newLaunchIO(p *process) (launchIO, error) {
	if err := stdio.Validate(p.stdio); err != nil {
		return launchIO{}, fmt.Errorf("%s: %w", p.name(), err)
	}
	if p.stdio.Terminal {
		sock, err := runc.NewTempConsoleSocket()
		if err != nil {
			return launchIO{}, fmt.Errorf("%s: console socket: %w", p.name(), err)
		}
		return launchIO{socket: sock}, nil
	}
	rio, err := stdio.NewPipes(p.ioUID, p.ioGID, p.stdio)
	if err != nil {
		return launchIO{}, fmt.Errorf("%s: %w", p.name(), err)
	}
	return launchIO{io: rio}, nil
}

// console is the console socket for go-runc: a nil interface, not a nil
// pointer, when there is none.
func (o launchIO) console() runc.ConsoleSocket {
	if o.socket == nil {
		return nil
	}
	return o.socket
}

func (o launchIO) close() {
	if o.socket != nil {
		o.socket.Close()
	}
}

// connect starts copying between the process and its stdio paths.
func (o launchIO) connect(p *process) (*stdio.Streams, error) {
	if o.socket != nil {
		con, err := o.socket.ReceiveMaster()
		if err != nil {
			return nil, fmt.Errorf("%s: receive terminal from runtime: %w", p.name(), err)
		}
		return stdio.CopyConsole(con, p.stdio)
	}
	return stdio.CopyPipes(o.io, p.stdio)
}

// startProcess runs launch (runc create or runc exec), connects the
// process's stdio, reads its pid and registers it for exit matching. An
// exit reaped before the pid was known is handled here.
func (s *Service) startProcess(p *process, pidFile string, status task.Status, launch func(launchIO) error) error {
	o, err := newLaunchIO(p)
	if err != nil {
		return err
	}
	defer o.close()
	s.beginStart()
	if err := launch(o); err != nil {
		s.endStart(nil, 0)
		if o.io != nil {
			o.io.Close()
		}
		return err
	}
	streams, err := o.connect(p)
	if err != nil {
		s.endStart(nil, 0)
		return err
	}
	pid, err := runc.ReadPidFile(pidFile)
	if err != nil {
		s.endStart(nil, 0)
		streams.Close()
		return fmt.Errorf("%s: read pid file: %w", p.name(), err)
	}
	p.setStarted(pid, streams, status)
	if p.id != "" {
		c := p.container
		c.mu.Lock()
		c.runningExecs++
		c.mu.Unlock()
	}
	if e, exited := s.endStart(p, pid); exited {
		s.processExited(p, e)
	}
	return nil
}

// startExec runs runc exec for a process added by Exec. The caller holds
// p.startMu.
func (s *Service) startExec(ctx context.Context, c *container, p *process) (*taskapi.StartResponse, error) {
	if _, status, _, _ := c.init.state(); status != task.Status_RUNNING {
		return nil, fmt.Errorf("start %s: task is %s: %w", p.name(), status, errdefs.ErrFailedPrecondition)
	}
	pidFile := filepath.Join(c.bundle, "exec-"+p.id+".pid")
	defer os.Remove(pidFile)
	launch := func(o launchIO) error {
		err := c.runc.Exec(context.WithoutCancel(ctx), c.id, *p.spec, &runc.ExecOpts{
			IO:            o.io,
			PidFile:       pidFile,
			ConsoleSocket: o.console(),
			Detach:        true,
		})
		if err != nil {
			return runcError(err, c.runc, fmt.Sprintf("start %s", p.name()))
		}
		return nil
	}
	if err := s.startProcess(p, pidFile, task.Status_RUNNING, launch); err != nil {
		return nil, err
	}
	pid, _, _, _ := p.state()
	s.publish(TopicExecStarted, &eventstypes.TaskExecStarted{ContainerID: c.id, ExecID: p.id, Pid: uint32(pid)})
	return &taskapi.StartResponse{Pid: uint32(pid)}, nil
}
