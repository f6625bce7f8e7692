package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/containerd/console"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
)

// exitError ends berth with a container process's exit status as its own
// exit code; execute prints nothing for it.
type exitError struct{ status int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.status) }

// exitCodeOf returns the exit code an error from a command asks for, if
// it is an exitError.
func exitCodeOf(err error) (int, bool) {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.status, true
	}
	return 0, false
}

// exitResult is nil for status 0, an exitError otherwise.
func exitResult(status uint32) error {
	if status == 0 {
		return nil
	}
	return &exitError{status: int(status)}
}

// startFailure is attach's error when the process did not start: the
// caller deletes it.
type startFailure struct{ err error }

func (e *startFailure) Error() string { return e.err.Error() }
func (e *startFailure) Unwrap() error { return e.err }

// proc is one process of a task: its init (execID "") or an exec.
type proc struct {
	c      *conn
	id     string
	execID string
}

func (p proc) tasks() tasksapi.TasksClient { return tasksapi.NewTasksClient(p.c.cc) }

func (p proc) start(ctx context.Context) error {
	_, err := p.tasks().Start(ctx, &tasksapi.StartRequest{ContainerID: p.id, ExecID: p.execID})
	return err
}

func (p proc) kill(ctx context.Context, sig syscall.Signal, all bool) error {
	_, err := p.tasks().Kill(ctx, &tasksapi.KillRequest{ContainerID: p.id, ExecID: p.execID, Signal: uint32(sig), All: all})
	return err
}

func (p proc) wait(ctx context.Context) (uint32, error) {
	resp, err := p.tasks().Wait(ctx, &tasksapi.WaitRequest{ContainerID: p.id, ExecID: p.execID})
	if err != nil {
		return 0, err
	}
	return resp.GetExitStatus(), nil
}

func (p proc) resize(ctx context.Context, ws console.WinSize) error {
	_, err := p.tasks().ResizePty(ctx, &tasksapi.ResizePtyRequest{
		ContainerID: p.id, ExecID: p.execID, Width: uint32(ws.Width), Height: uint32(ws.Height),
	})
	return err
}

func (p proc) closeStdin(ctx context.Context) error {
	_, err := p.tasks().CloseIO(ctx, &tasksapi.CloseIORequest{ContainerID: p.id, ExecID: p.execID, Stdin: true})
	return err
}

// attach starts p, created with at's FIFOs, and copies its stdio to the
// CLI's streams until it exits; it returns its exit status. Signals sent
// to berth go to p. With a terminal, its size follows berth's window, and
// with stdin too, berth's terminal is in raw mode meanwhile.
func attach(ctx context.Context, a *app, p proc, at *attachment) (uint32, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	con := localConsole(a, at)
	if con != nil && at.stdin != "" {
		if err := con.SetRaw(); err != nil {
			return 0, fmt.Errorf("put the terminal in raw mode: %w", err)
		}
		defer func() { _ = con.Reset() }()
	}
	at.copy(a.stdin, a.stdout, a.stderr, func() {
		if err := p.closeStdin(context.WithoutCancel(ctx)); err != nil && ctx.Err() == nil {
			fmt.Fprintf(a.stderr, "berth: close stdin of %s: %v\n", p.id, err)
		}
	})
	if con != nil {
		resizeTo(ctx, con, p) // before the start, so that the process sees its size at once
	}
	// Catch the signals before the start: one that arrives while p starts
	// (its first output already on the terminal) is forwarded once p runs,
	// instead of ending berth or being lost.
	signals := catchSignals()
	defer signals.stop()
	if err := p.start(ctx); err != nil {
		return 0, &startFailure{err}
	}
	signals.forward(ctx, p, cancel)
	if con != nil {
		defer forwardResize(ctx, con, p)()
	}
	status, err := p.wait(ctx)
	if err != nil {
		return 0, err
	}
	at.wait(outputDrain)
	return status, nil
}

// localConsole is berth's terminal (its stdin, else its stdout) when the
// process has a terminal too; nil otherwise.
func localConsole(a *app, at *attachment) console.Console {
	if !at.tty {
		return nil
	}
	for _, s := range []any{a.stdin, a.stdout} {
		if f, ok := s.(*os.File); ok {
			if con, err := console.ConsoleFromFile(f); err == nil {
				return con
			}
		}
	}
	return nil
}

// forwardedSignals are the signals berth passes on to a foreground process.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2}

// caughtSignals are the forwarded signals berth receives, held from
// catchSignals on until forward passes them to the process.
type caughtSignals struct {
	ch   chan os.Signal
	done chan struct{}
}

func catchSignals() *caughtSignals {
	c := &caughtSignals{ch: make(chan os.Signal, 8), done: make(chan struct{})}
	signal.Notify(c.ch, forwardedSignals...)
	return c
}

// forward sends the caught signals, those held and those to come, to p
// until stop. When berthd cannot be told, it gives up waiting: cancel
// ends the command.
func (c *caughtSignals) forward(ctx context.Context, p proc, cancel context.CancelFunc) {
	go func() {
		for {
			select {
			case <-c.done:
				return
			case sig := <-c.ch:
				kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				if err := p.kill(kctx, sig.(syscall.Signal), false); err != nil {
					cancel()
				}
				kcancel()
			}
		}
	}()
}

func (c *caughtSignals) stop() {
	signal.Stop(c.ch)
	close(c.done)
}

// forwardResize sets p's terminal to the size of con now and whenever the
// window changes, until the returned function is called.
func forwardResize(ctx context.Context, con console.Console, p proc) func() {
	resize := func() { resizeTo(ctx, con, p) }
	resize()
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGWINCH)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-ch:
				resize()
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}

// resizeTo sets p's terminal to the size of con. It fails silently: the
// process may be gone already, and the next window change tries again.
func resizeTo(ctx context.Context, con console.Console, p proc) {
	if ws, err := con.Size(); err == nil {
		_ = p.resize(ctx, ws)
	}
}
