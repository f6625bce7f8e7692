// Package stdio connects the standard streams of a container process to
// what the daemon handed the shim: FIFO paths (the usual case, created and
// opened for reading by the daemon or its client before Create or Exec),
// or file:// URIs for log files.
//
// Without a terminal, runc gets pipes (NewPipes) and the shim copies between
// them and the FIFOs (CopyPipes): the container never holds the FIFOs
// themselves, so a client that goes away cannot make it block on open or
// die of SIGPIPE. With a terminal, runc passes the pty master back over a
// console socket and the shim copies between it and the FIFOs
// (CopyConsole); stderr is then part of stdout.
//
// Lifecycle: NewPipes before runc create/exec; CopyPipes or CopyConsole
// after it returns; CloseStdin when the client closes its input; Wait after
// the process exited, to let its last output through; then Close.
package stdio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
}

// Streams are the copy loops of one process.
type Streams struct {
	stdin     io.WriteCloser // the process side of stdin
	stdinOnce sync.Once
	console   console.Console
	outputs   sync.WaitGroup
	closers   []io.Closer // closed by Close, in order
}

// NewPipes returns the pipes runc hands the process for each stream cfg
// connects, owned by uid:gid so that a non-root process can reopen them
// through /proc/self/fd.
//
// A stream that is not connected gets /dev/null, never nothing: go-runc
// would otherwise capture runc's output in a pipe that the container
// inherits, and wait for it to close, which a running container never does.
func NewPipes(uid, gid int, cfg Config) (runc.IO, error) {
	rio, err := runc.NewPipeIO(uid, gid, func(o *runc.IOOption) {
		o.OpenStdin = cfg.Stdin != ""
		o.OpenStdout = cfg.Stdout != ""
		o.OpenStderr = cfg.Stderr != ""
	})
	if err != nil {
		return nil, fmt.Errorf("create stdio pipes: %w", err)
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		rio.Close()
		return nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	return &nullFilled{IO: rio, null: null}, nil
}

// nullFilled is a runc.IO whose unconnected streams are /dev/null.
type nullFilled struct {
	runc.IO
	null *os.File
}

func (n *nullFilled) Set(cmd *exec.Cmd) {
	n.IO.Set(cmd)
	if cmd.Stdin == nil {
		cmd.Stdin = n.null
	}
	if cmd.Stdout == nil {
		cmd.Stdout = n.null
	}
	if cmd.Stderr == nil {
		cmd.Stderr = n.null
	}
}

// CloseAfterStart closes the ends the process took with it.
func (n *nullFilled) CloseAfterStart() error {
	if c, ok := n.IO.(runc.StartCloser); ok {
		return c.CloseAfterStart()
	}
	return nil
}

func (n *nullFilled) Close() error {
	return errors.Join(n.IO.Close(), n.null.Close())
}

// CopyPipes copies between the pipes of rio and the paths of cfg. It owns
// rio from then on: Close closes it.
func CopyPipes(rio runc.IO, cfg Config) (*Streams, error) {
	s := &Streams{}
	if err := s.copyOutput(cfg.Stdout, rio.Stdout()); err != nil {
		s.Close()
		rio.Close()
		return nil, err
	}
	if err := s.copyOutput(cfg.Stderr, rio.Stderr()); err != nil {
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
	if err := s.copyOutput(cfg.Stdout, ptyReader{con}); err != nil {
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

// copyOutput starts copying src to target, if both are set.
func (s *Streams) copyOutput(target string, src io.Reader) error {
	if target == "" || src == nil {
		return nil
	}
	dst, err := openOutput(target)
	if err != nil {
		return err
	}
	s.closers = append(s.closers, dst)
	s.outputs.Add(1)
	go func() {
		defer s.outputs.Done()
		_, _ = io.Copy(dst, src)
	}()
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
	go func() {
		_, _ = io.Copy(dst, src)
		_ = s.CloseStdin()
	}()
	return nil
}

// openOutput opens where an output stream goes: a file:// URI, or a FIFO
// path opened read-write, which never blocks and never fails with EPIPE
// when the reader goes away.
func openOutput(target string) (io.WriteCloser, error) {
	if path, ok := strings.CutPrefix(target, "file://"); ok {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("open output %q: %w", target, err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return nil, fmt.Errorf("open output %q: %w", target, err)
		}
		return f, nil
	}
	if scheme, _, ok := strings.Cut(target, "://"); ok {
		return nil, fmt.Errorf("output %q: scheme %q: %w", target, scheme, errdefs.ErrNotImplemented)
	}
	f, err := fifo.OpenFifo(context.Background(), target, syscall.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open output fifo %q: %w", target, err)
	}
	return f, nil
}

// CloseStdin closes the process's stdin, so that it reads EOF.
func (s *Streams) CloseStdin() error {
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

// Wait waits up to timeout for the output copies to finish, which they do
// once every holder of the process's output has closed it. It reports
// whether they finished.
func (s *Streams) Wait(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() {
		s.outputs.Wait()
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
