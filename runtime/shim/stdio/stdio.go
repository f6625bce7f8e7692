// Package stdio connects the standard streams of a container process to
// what the daemon handed the shim: FIFO paths (the usual case, created and
// opened for reading by the daemon or its client before Create or Exec),
// file:// URIs for log files (appended to, parent directories created; one
// file when stdout and stderr name the same), or binary:// URIs for a
// logging binary (see logger.go for its protocol).
//
// Without a terminal, runc gets pipes (NewPipes) and the shim copies between
// them and the FIFOs (CopyPipes): the container never holds the FIFOs
// themselves, so a client that goes away cannot make it block on open or
// die of SIGPIPE. A logging binary is the exception: it is the shim's own
// child, started by NewPipes, and the process writes into its pipes
// directly, so that logging costs the shim nothing. With a terminal, runc
// passes the pty master back over a console socket and the shim copies
// between it and the FIFOs (CopyConsole); stderr is then part of stdout.
//
// Lifecycle: Validate the Config first; NewPipes before runc create/exec;
// CopyPipes or CopyConsole after it returns; CloseStdin when the client
// closes its input; Wait after the process exited, to let its last output
// through (and the logging binary finish); then Close.
package stdio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/console"
	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
	runc "github.com/containerd/go-runc"
)

// Config says where a process's streams go, as the task API carries them.
// An empty path means the stream is not connected.
type Config struct {
	Stdin    string
	Stdout   string
	Stderr   string
	Terminal bool
	// ID and Namespace name the process to a logging binary
	// (CONTAINER_ID, CONTAINER_NAMESPACE): as with containerd's shim, the
	// container id for an init process, the exec id for an exec.
	ID        string
	Namespace string
}

// Streams are the copy loops of one process.
type Streams struct {
	stdin     io.WriteCloser // the process side of stdin
	stdinOnce sync.Once
	// inputDone is closed when the stdin copy has ended (nil: no copy).
	inputDone chan struct{}
	console   console.Console
	outputs   sync.WaitGroup
	logger    *logger     // the logging binary, if any
	closers   []io.Closer // closed by Close, in order
}

// NewPipes returns the pipes runc hands the process for each stream cfg
// connects, owned by uid:gid so that a non-root process can reopen them
// through /proc/self/fd. Streams that go to a logging binary get the write
// ends of its pipes instead; NewPipes starts it and waits until it is ready.
//
// A stream that is not connected gets /dev/null, never nothing: go-runc
// would otherwise capture runc's output in a pipe that the container
// inherits, and wait for it to close, which a running container never does.
func NewPipes(uid, gid int, cfg Config) (runc.IO, error) {
	if err := Validate(cfg); err != nil {
		return nil, err
	}
	lg, err := startLogger(uid, gid, cfg)
	if err != nil {
		return nil, err
	}
	rio, err := runc.NewPipeIO(uid, gid, func(o *runc.IOOption) {
		o.OpenStdin = cfg.Stdin != ""
		o.OpenStdout = cfg.Stdout != "" && !isBinary(cfg.Stdout)
		o.OpenStderr = cfg.Stderr != "" && !isBinary(cfg.Stderr)
	})
	if err != nil {
		lg.stop()
		return nil, fmt.Errorf("create stdio pipes: %w", err)
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		rio.Close()
		lg.stop()
		return nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	return &processIO{IO: rio, null: null, logger: lg}, nil
}

// processIO is a runc.IO whose streams go to pipes the shim copies from,
// to a logging binary, or to /dev/null.
type processIO struct {
	runc.IO
	null   *os.File
	logger *logger // nil without a binary:// stream
}

func (p *processIO) Set(cmd *exec.Cmd) {
	p.IO.Set(cmd)
	out, errOut := p.logger.writers()
	if out != nil {
		cmd.Stdout = out
	}
	if errOut != nil {
		cmd.Stderr = errOut
	}
	if cmd.Stdin == nil {
		cmd.Stdin = p.null
	}
	if cmd.Stdout == nil {
		cmd.Stdout = p.null
	}
	if cmd.Stderr == nil {
		cmd.Stderr = p.null
	}
}

// CloseAfterStart closes the ends the process took with it, the logging
// binary's included: then the binary reads EOF once the container's
// processes are gone.
func (p *processIO) CloseAfterStart() error {
	p.logger.closeWriters()
	if c, ok := p.IO.(runc.StartCloser); ok {
		return c.CloseAfterStart()
	}
	return nil
}

// Close closes the pipes and stops the logging binary.
func (p *processIO) Close() error {
	err := errors.Join(p.IO.Close(), p.null.Close())
	p.logger.stop()
	return err
}

// CopyPipes copies between the pipes of rio and the paths of cfg. It owns
// rio from then on: Close closes it.
func CopyPipes(rio runc.IO, cfg Config) (*Streams, error) {
	s := &Streams{}
	if p, ok := rio.(*processIO); ok {
		s.logger = p.logger
	}
	if err := s.copyOutputs(cfg, rio.Stdout(), rio.Stderr()); err != nil {
		s.Close()
		rio.Close()
		return nil, err
	}
	if err := s.copyInput(cfg.Stdin, rio.Stdin()); err != nil {
		s.Close()
		rio.Close()
		return nil, err
	}
	s.closers = append(s.closers, rio)
	return s, nil
}

// CopyConsole copies between the pty master con and the paths of cfg
// (stdin and stdout). It owns con from then on: Close closes it.
func CopyConsole(con console.Console, cfg Config) (*Streams, error) {
	s := &Streams{console: con}
	if err := s.copyOutputs(Config{Stdout: cfg.Stdout}, ptyReader{con}, nil); err != nil {
		s.Close()
		con.Close()
		return nil, err
	}
	if err := s.copyInput(cfg.Stdin, nopCloser{con}); err != nil {
		s.Close()
		con.Close()
		return nil, err
	}
	s.closers = append(s.closers, con)
	return s, nil
}

// copyOutputs starts copying stdout and stderr to their targets, where
// both are set. Stdout and stderr naming the same file share one
// descriptor.
func (s *Streams) copyOutputs(cfg Config, stdout, stderr io.Reader) error {
	var shared io.Writer
	for _, o := range []struct {
		target string
		src    io.Reader
	}{{cfg.Stdout, stdout}, {cfg.Stderr, stderr}} {
		if o.target == "" || o.src == nil {
			continue
		}
		dst := shared
		if dst == nil {
			f, err := openOutput(o.target)
			if err != nil {
				return err
			}
			s.closers = append(s.closers, f)
			dst = f
			if cfg.Stdout == cfg.Stderr && isFile(o.target) {
				shared = f
			}
		}
		s.outputs.Add(1)
		go func() {
			defer s.outputs.Done()
			_, _ = io.Copy(dst, o.src)
		}()
	}
	return nil
}

// copyInput starts copying the FIFO source to dst, the process's stdin, and
// closes dst when the client closes its end. The FIFO is opened in the
// background: the client may open its writing end after Start.
func (s *Streams) copyInput(source string, dst io.WriteCloser) error {
	if source == "" || dst == nil {
		return nil
	}
	src, err := fifo.OpenFifo(context.Background(), source, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("open stdin %q: %w", source, err)
	}
	s.closers = append(s.closers, src)
	s.stdin = dst
	s.inputDone = make(chan struct{})
	go func() {
		defer close(s.inputDone)
		_, _ = io.Copy(dst, src)
		_ = s.closeStdin()
	}()
	return nil
}

// stdinDrain bounds how long CloseStdin waits for the stdin copy to pass
// on what the client wrote before it asked.
const stdinDrain = 2 * time.Second

// CloseStdin closes the process's stdin, so that it reads EOF, once what
// the client wrote has reached the process: clients close their end of the
// FIFO before asking (CloseIO), so the copy ends by itself; one that keeps
// it open has the stream cut after stdinDrain. Closing at once could drop
// input still in the FIFO (`echo x | berth run -i IMG cat` printing
// nothing).
func (s *Streams) CloseStdin() error {
	if s.inputDone != nil {
		t := time.NewTimer(stdinDrain)
		select {
		case <-s.inputDone:
		case <-t.C:
		}
		t.Stop()
	}
	return s.closeStdin()
}

func (s *Streams) closeStdin() error {
	var err error
	s.stdinOnce.Do(func() {
		if s.stdin != nil {
			err = s.stdin.Close()
		}
	})
	return err
}

// Resize sets the size of the terminal, if the process has one.
func (s *Streams) Resize(width, height uint16) error {
	if s.console == nil {
		return fmt.Errorf("resize: process has no terminal: %w", errdefs.ErrFailedPrecondition)
	}
	return s.console.Resize(console.WinSize{Width: width, Height: height})
}

// Wait waits up to timeout for the output copies, and the logging binary,
// to finish, which they do once every holder of the process's output has
// closed it. It reports whether they finished.
func (s *Streams) Wait(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() {
		s.outputs.Wait()
		s.logger.wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Close stops every copy and closes the FIFOs, files and pipes.
func (s *Streams) Close() error {
	var errs []error
	for _, c := range s.closers {
		if err := c.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	s.closers = nil
	return errors.Join(errs...)
}

// ptyReader ends the copy at EIO, which is how a pty master reports that
// every slave descriptor is closed.
type ptyReader struct{ r io.Reader }

func (p ptyReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if errors.Is(err, syscall.EIO) {
		return n, io.EOF
	}
	return n, err
}

// nopCloser keeps the end of stdin from closing the console, which still
// carries the output.
type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
