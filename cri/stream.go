package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/cri/streaming"
	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/runtime/manager"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Exec, Attach and PortForward are served by the streaming server (package
// cri/streaming), which berthd runs on stream_server_address and
// stream_server_port: the gRPC call answers a single-use URL, and the
// process runs when the client connects there. streamRuntime is what the
// server runs requests with.

// startStreaming starts the streaming server; Shutdown stops it.
func (s *Service) startStreaming(ctx context.Context) error {
	addr := net.JoinHostPort(s.cfg.StreamServerAddress, s.cfg.StreamServerPort)
	srv, err := streaming.New(addr, streamRuntime{s: s})
	if err != nil {
		return err
	}
	s.stream = srv
	go func() {
		if err := srv.Serve(); err != nil {
			log.G(ctx).Error("CRI streaming server stopped", "error", err)
		}
	}()
	log.G(ctx).Info("CRI streaming server listening", "address", srv.Addr())
	return nil
}

func (s *Service) streamServer() (*streaming.Server, error) {
	if s.stream == nil {
		return nil, fmt.Errorf("the CRI streaming server is not running: %w", errdefs.ErrUnavailable)
	}
	return s.stream, nil
}

func (r *runtimeService) Exec(ctx context.Context, req *runtime.ExecRequest) (*runtime.ExecResponse, error) {
	c, err := r.s.getContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if c.getStatus().State != stateRunning {
		return nil, fmt.Errorf("exec in container %q: it is not running: %w", c.meta.ID, errdefs.ErrFailedPrecondition)
	}
	srv, err := r.s.streamServer()
	if err != nil {
		return nil, err
	}
	u, err := srv.GetExec(req)
	if err != nil {
		return nil, err
	}
	return &runtime.ExecResponse{Url: u}, nil
}

func (r *runtimeService) PortForward(ctx context.Context, req *runtime.PortForwardRequest) (*runtime.PortForwardResponse, error) {
	if _, err := r.s.getSandbox(req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	srv, err := r.s.streamServer()
	if err != nil {
		return nil, err
	}
	u, err := srv.GetPortForward(req)
	if err != nil {
		return nil, err
	}
	return &runtime.PortForwardResponse{Url: u}, nil
}

// streamRuntime runs the streaming server's requests.
type streamRuntime struct{ s *Service }

// Exec runs cmd in container id through the shim's Exec with FIFOs for
// the streams asked for. A client that goes away kills the process.
func (r streamRuntime) Exec(ctx context.Context, id string, cmd []string, st streaming.Streams) error {
	ctx = withNamespace(ctx)
	s := r.s
	c, err := s.getContainer(id)
	if err != nil {
		return err
	}
	id = c.meta.ID
	t, err := s.deps.Tasks.Get(ctx, id)
	if err != nil {
		return fmt.Errorf("exec in container %q: %w", id, err)
	}
	proc, err := s.execProcess(ctx, id, cmd)
	if err != nil {
		return err
	}
	if proc, err = withTerminal(proc, st.TTY); err != nil {
		return err
	}
	execID := newID()[:32]
	eio, err := openExecIO(ctx, filepath.Join(s.containerState(id), "exec", execID), st)
	if err != nil {
		return err
	}
	defer eio.close()
	sctx := t.ShimContext(context.WithoutCancel(ctx))
	_, err = t.Client().Exec(sctx, &taskapi.ExecProcessRequest{ID: id, ExecID: execID, Terminal: st.TTY,
		Stdin: eio.stdinPath, Stdout: eio.stdoutPath, Stderr: eio.stderrPath,
		Spec: &anypb.Any{TypeUrl: processTypeURL, Value: proc}})
	if err != nil {
		return fmt.Errorf("exec in container %q: %w", id, manager.ShimError(err))
	}
	defer func() { _, _ = t.Client().Delete(sctx, &taskapi.DeleteRequest{ID: id, ExecID: execID}) }()
	eio.start(st, func() {
		_, _ = t.Client().CloseIO(sctx, &taskapi.CloseIORequest{ID: id, ExecID: execID, Stdin: true})
	})
	if _, err := t.Client().Start(sctx, &taskapi.StartRequest{ID: id, ExecID: execID}); err != nil {
		return fmt.Errorf("exec in container %q: start %q: %w", id, cmd[0], manager.ShimError(err))
	}
	done := make(chan struct{})
	defer close(done)
	if st.TTY && st.Resize != nil {
		go resizeExec(sctx, t, execID, st.Resize, done)
	}
	code, err := waitStreamExec(ctx, t, execID)
	if err != nil {
		return fmt.Errorf("exec %q in container %q: %w", cmd, id, err)
	}
	eio.wait(execDrainTimeout)
	if code != 0 {
		return &streaming.ExitError{Code: int(code)}
	}
	return nil
}

// withTerminal sets the encoded process's Terminal.
func withTerminal(proc []byte, tty bool) ([]byte, error) {
	var p specs.Process
	if err := json.Unmarshal(proc, &p); err != nil {
		return nil, err
	}
	p.Terminal = tty
	return json.Marshal(&p)
}

// waitStreamExec waits for the exec to exit; once ctx ends first (the
// client went away) it kills it and waits for it to be gone.
func waitStreamExec(ctx context.Context, t *manager.Task, execID string) (uint32, error) {
	type result struct {
		code uint32
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		resp, err := t.Client().Wait(t.ShimContext(context.WithoutCancel(ctx)), &taskapi.WaitRequest{ID: t.ID, ExecID: execID})
		ch <- result{resp.GetExitStatus(), manager.ShimError(err)}
	}()
	select {
	case r := <-ch:
		return r.code, r.err
	case <-ctx.Done():
	}
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), execKillTimeout)
	defer cancel()
	_, _ = t.Client().Kill(t.ShimContext(kctx), &taskapi.KillRequest{ID: t.ID, ExecID: execID, Signal: uint32(syscall.SIGKILL)})
	select {
	case r := <-ch:
		return r.code, r.err
	case <-kctx.Done():
		return 0, fmt.Errorf("the client went away and the process outlived SIGKILL: %w", kctx.Err())
	}
}

func resizeExec(ctx context.Context, t *manager.Task, execID string, sizes <-chan streaming.TermSize, done <-chan struct{}) {
	for {
		select {
		case size, ok := <-sizes:
			if !ok {
				return
			}
			_, _ = t.Client().ResizePty(ctx, &taskapi.ResizePtyRequest{ID: t.ID, ExecID: execID, Width: uint32(size.Width), Height: uint32(size.Height)})
		case <-done:
			return
		}
	}
}

// execIO are an exec's FIFOs, in its own directory.
type execIO struct {
	dir                               string
	stdinPath, stdoutPath, stderrPath string
	stdin                             io.WriteCloser
	stdout, stderr                    io.ReadCloser
	wg                                sync.WaitGroup
}

// openExecIO creates the FIFOs for the streams asked for and opens
// berthd's ends without blocking. A terminal's output is always read
// (and dropped without stdout), lest the process block on it.
func openExecIO(ctx context.Context, dir string, st streaming.Streams) (*execIO, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	e := &execIO{dir: dir}
	ctx = context.WithoutCancel(ctx)
	open := func(name string, flag int) (io.ReadWriteCloser, string, error) {
		p := filepath.Join(dir, name)
		f, err := fifo.OpenFifo(ctx, p, flag|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
		if err != nil {
			e.close()
			return nil, "", fmt.Errorf("exec stdio %s: %w", p, err)
		}
		return f, p, nil
	}
	var err error
	if st.Stdin != nil {
		var f io.ReadWriteCloser
		if f, e.stdinPath, err = open("stdin", syscall.O_WRONLY); err != nil {
			return nil, err
		}
		e.stdin = f
	}
	if st.Stdout != nil || st.TTY {
		var f io.ReadWriteCloser
		if f, e.stdoutPath, err = open("stdout", syscall.O_RDONLY); err != nil {
			return nil, err
		}
		e.stdout = f
	}
	if st.Stderr != nil && !st.TTY {
		var f io.ReadWriteCloser
		if f, e.stderrPath, err = open("stderr", syscall.O_RDONLY); err != nil {
			return nil, err
		}
		e.stderr = f
	}
	return e, nil
}

// start copies the streams. At the end of the client's stdin the FIFO
// is closed and closeStdin (CloseIO) called, as ctr does: the shim passes
// on what is left in the FIFO before it closes the process's stdin.
func (e *execIO) start(st streaming.Streams, closeStdin func()) {
	if e.stdin != nil {
		go func() {
			_, _ = io.Copy(e.stdin, st.Stdin)
			e.stdin.Close()
			closeStdin()
		}()
	}
	copyOut := func(w io.Writer, r io.Reader) {
		if w == nil {
			w = io.Discard
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			_, _ = io.Copy(w, r)
		}()
	}
	if e.stdout != nil {
		copyOut(st.Stdout, e.stdout)
	}
	if e.stderr != nil {
		copyOut(st.Stderr, e.stderr)
	}
}

// wait returns once the output ended, or after timeout (a background
// process may hold it open).
func (e *execIO) wait(timeout time.Duration) {
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		e.closeOutput()
		<-done
	}
}

func (e *execIO) closeOutput() {
	for _, f := range []io.Closer{e.stdout, e.stderr} {
		if f != nil {
			f.Close()
		}
	}
}

func (e *execIO) close() {
	e.closeOutput()
	if e.stdin != nil {
		e.stdin.Close()
	}
	os.RemoveAll(e.dir)
}
