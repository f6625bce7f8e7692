package cri

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/berth-dev/berth/cri/streaming"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Attach joins a container's main process's stdio. Output normally goes
// from the shim to a logging binary (logger.go), which berthd never sees;
// so containers created with stdin or a terminal, the ones Attach is
// meant for, keep their stdio in berthd instead: FIFOs that berthd's
// fifoCopier copies into the log and to the attach sessions, and a stdin
// FIFO whose write end berthd holds for the container's life. Attach to
// any other container, or to one a previous berthd started (its FIFOs
// went with that berthd), fails with FailedPrecondition.

func (r *runtimeService) Attach(ctx context.Context, req *runtime.AttachRequest) (*runtime.AttachResponse, error) {
	c, err := r.s.getContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if _, err := c.attachable(); err != nil {
		return nil, err
	}
	srv, err := r.s.streamServer()
	if err != nil {
		return nil, err
	}
	u, err := srv.GetAttach(req)
	if err != nil {
		return nil, err
	}
	return &runtime.AttachResponse{Url: u}, nil
}

// attachable is the running container's attach point.
func (c *container) attachable() (*attachIO, error) {
	if c.getStatus().State != stateRunning {
		return nil, fmt.Errorf("attach to container %q: it is not running: %w", c.meta.ID, errdefs.ErrFailedPrecondition)
	}
	c.smu.Lock()
	fc := c.copier
	c.smu.Unlock()
	if fc == nil || (!c.config.GetStdin() && !c.config.GetTty()) {
		return nil, fmt.Errorf("attach to container %q: only containers created with stdin or tty by this berthd can be attached to: %w",
			c.meta.ID, errdefs.ErrFailedPrecondition)
	}
	return fc.attach, nil
}

// Attach copies the client's stdin into the container's and the
// container's output to the client until the output ends or the client
// goes away. With stdin_once, the end of the client's stdin closes the
// container's (as the FIFO's writer is then gone, a second attach cannot
// write into it).
func (r streamRuntime) Attach(ctx context.Context, id string, st streaming.Streams) error {
	ctx = withNamespace(ctx)
	c, err := r.s.getContainer(id)
	if err != nil {
		return err
	}
	a, err := c.attachable()
	if err != nil {
		return err
	}
	sess := a.join(st.Stdout, st.Stderr)
	defer a.leave(sess)
	if st.Stdin != nil {
		go func() {
			_, _ = io.Copy(stdinWriter{a}, st.Stdin)
			// The shim reads the rest of the FIFO, then closes the
			// container's stdin: no CloseIO, which could cut it short.
			if a.stdinOnce {
				a.closeStdin()
			}
		}()
	}
	if st.TTY && st.Resize != nil {
		go r.resizeInit(ctx, c.meta.ID, st.Resize, sess.done)
	}
	select {
	case <-sess.done:
	case <-ctx.Done():
	}
	return nil
}

func (r streamRuntime) resizeInit(ctx context.Context, id string, sizes <-chan streaming.TermSize, done <-chan struct{}) {
	t, err := r.s.deps.Tasks.Get(ctx, id)
	if err != nil {
		return
	}
	sctx := t.ShimContext(context.WithoutCancel(ctx))
	for {
		select {
		case size, ok := <-sizes:
			if !ok {
				return
			}
			_, _ = t.Client().ResizePty(sctx, &taskapi.ResizePtyRequest{ID: id, Width: uint32(size.Width), Height: uint32(size.Height)})
		case <-done:
			return
		}
	}
}

// attachIO is a container's stdio as attach sessions see it: the output
// the fifoCopier reads, fanned out to every session, and the write end
// of the stdin FIFO, shared by all of them.
type attachIO struct {
	tty, stdinOnce bool

	mu       sync.Mutex
	sessions map[*attachSession]struct{}
	ended    bool
	stdin    io.WriteCloser // nil without stdin or once closed
}

// attachSession is one client's output writers; done is closed when the
// output ended or a write to the client failed.
type attachSession struct {
	stdout, stderr io.Writer
	done           chan struct{}
}

func newAttachIO(tty, stdinOnce bool) *attachIO {
	return &attachIO{tty: tty, stdinOnce: stdinOnce, sessions: map[*attachSession]struct{}{}}
}

func (a *attachIO) setStdin(w io.WriteCloser) {
	a.mu.Lock()
	a.stdin = w
	a.mu.Unlock()
}

func (a *attachIO) join(stdout, stderr io.Writer) *attachSession {
	s := &attachSession{stdout: stdout, stderr: stderr, done: make(chan struct{})}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ended {
		close(s.done)
		return s
	}
	a.sessions[s] = struct{}{}
	return s
}

func (a *attachIO) leave(s *attachSession) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.sessions[s]; ok {
		delete(a.sessions, s)
		close(s.done)
	}
}

// end ends every session: the output is over.
func (a *attachIO) end() {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ended = true
	for s := range a.sessions {
		delete(a.sessions, s)
		close(s.done)
	}
}

// closeStdin closes the stdin FIFO; it reports whether this call did.
func (a *attachIO) closeStdin() bool {
	if a == nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stdin == nil {
		return false
	}
	a.stdin.Close()
	a.stdin = nil
	return true
}

// output is the writer of a stream's output. Sessions whose client
// fails a write are dropped; the container's output is never held up by
// an error.
func (a *attachIO) output(stream string) io.Writer { return attachOutput{a, stream} }

type attachOutput struct {
	a      *attachIO
	stream string
}

func (o attachOutput) Write(p []byte) (int, error) {
	a := o.a
	a.mu.Lock()
	defer a.mu.Unlock()
	for s := range a.sessions {
		w := s.stdout
		if o.stream == streamStderr && !a.tty {
			w = s.stderr
		}
		if w == nil {
			continue
		}
		if _, err := w.Write(p); err != nil {
			delete(a.sessions, s)
			close(s.done)
		}
	}
	return len(p), nil
}

// stdinWriter writes into the container's stdin while it is open.
type stdinWriter struct{ a *attachIO }

func (w stdinWriter) Write(p []byte) (int, error) {
	w.a.mu.Lock()
	f := w.a.stdin
	w.a.mu.Unlock()
	if f == nil {
		return 0, io.ErrClosedPipe
	}
	return f.Write(p)
}
