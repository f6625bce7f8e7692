package cri

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/runtime/manager"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// processTypeURL is how containerd clients send a runtime-spec Process.
const processTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/Process"

// Bounds of ExecSync.
const (
	// maxExecOutput is what is kept of each stream; the rest is read and
	// dropped, so that the process never blocks on a full pipe.
	maxExecOutput = 16 << 20
	// execDrainTimeout is how long output is read after the process
	// exited: a background process it left may hold the pipe open.
	execDrainTimeout = 2 * time.Second
	// execKillTimeout bounds the wait for a process killed at timeout.
	execKillTimeout = 10 * time.Second
)

func (r *runtimeService) ExecSync(ctx context.Context, req *runtime.ExecSyncRequest) (*runtime.ExecSyncResponse, error) {
	ctx = withNamespace(ctx)
	c, err := r.s.getContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if len(req.GetCmd()) == 0 {
		return nil, fmt.Errorf("exec in container %q: no command: %w", c.meta.ID, errdefs.ErrInvalidArgument)
	}
	return r.s.execSync(ctx, c, req.GetCmd(), time.Duration(req.GetTimeout())*time.Second)
}

// execSync runs cmd in the running container c through the shim's Exec,
// with the container's process settings (user, environment, working
// directory, capabilities), and returns its exit code and output. With a
// timeout, a process still running then is killed and ExecSync fails
// with DeadlineExceeded.
func (s *Service) execSync(ctx context.Context, c *container, cmd []string, timeout time.Duration) (*runtime.ExecSyncResponse, error) {
	id := c.meta.ID
	if c.getStatus().State != stateRunning {
		return nil, fmt.Errorf("exec in container %q: it is not running: %w", id, errdefs.ErrFailedPrecondition)
	}
	t, err := s.deps.Tasks.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("exec in container %q: %w", id, err)
	}
	proc, err := s.execProcess(ctx, id, cmd)
	if err != nil {
		return nil, err
	}
	execID := newID()[:32]
	dir := filepath.Join(s.containerState(id), "exec", execID)
	out, err := openExecOutput(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	defer out.close()
	sctx := t.ShimContext(context.WithoutCancel(ctx))
	_, err = t.Client().Exec(sctx, &taskapi.ExecProcessRequest{ID: id, ExecID: execID, Stdout: out.stdoutPath, Stderr: out.stderrPath,
		Spec: &anypb.Any{TypeUrl: processTypeURL, Value: proc}})
	if err != nil {
		return nil, fmt.Errorf("exec in container %q: %w", id, manager.ShimError(err))
	}
	defer func() { _, _ = t.Client().Delete(sctx, &taskapi.DeleteRequest{ID: id, ExecID: execID}) }()
	out.start()
	if _, err := t.Client().Start(sctx, &taskapi.StartRequest{ID: id, ExecID: execID}); err != nil {
		return nil, fmt.Errorf("exec in container %q: start %q: %w", id, cmd[0], manager.ShimError(err))
	}
	code, err := s.waitExec(ctx, t, execID, timeout)
	if err != nil {
		return nil, fmt.Errorf("exec %q in container %q: %w", cmd, id, err)
	}
	_, _ = t.Client().Delete(sctx, &taskapi.DeleteRequest{ID: id, ExecID: execID})
	stdout, stderr := out.wait(execDrainTimeout)
	return &runtime.ExecSyncResponse{ExitCode: int32(code), Stdout: stdout, Stderr: stderr}, nil
}

// execProcess is the container's process with cmd as its arguments.
func (s *Service) execProcess(ctx context.Context, id string, cmd []string) ([]byte, error) {
	rec, err := s.deps.Containers.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	var spec specs.Spec
	if err := json.Unmarshal(rec.Spec.GetValue(), &spec); err != nil || spec.Process == nil {
		return nil, fmt.Errorf("exec in container %q: its spec has no process (%v): %w", id, err, errdefs.ErrFailedPrecondition)
	}
	p := *spec.Process
	p.Args, p.Terminal, p.ConsoleSize = cmd, false, nil
	return json.Marshal(&p)
}

// waitExec waits for the exec to exit, killing it when timeout (if not
// zero) passes first.
func (s *Service) waitExec(ctx context.Context, t *manager.Task, execID string, timeout time.Duration) (uint32, error) {
	wctx := context.WithoutCancel(ctx)
	var cancel context.CancelFunc = func() {}
	if timeout > 0 {
		wctx, cancel = context.WithTimeout(wctx, timeout)
	}
	defer cancel()
	resp, err := t.Client().Wait(t.ShimContext(wctx), &taskapi.WaitRequest{ID: t.ID, ExecID: execID})
	if err == nil {
		return resp.GetExitStatus(), nil
	}
	if wctx.Err() == nil {
		return 0, manager.ShimError(err)
	}
	// Timed out: kill it and wait until it is gone, so that nothing of it
	// stays running.
	kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), execKillTimeout)
	defer kcancel()
	_, _ = t.Client().Kill(t.ShimContext(kctx), &taskapi.KillRequest{ID: t.ID, ExecID: execID, Signal: uint32(syscall.SIGKILL)})
	_, _ = t.Client().Wait(t.ShimContext(kctx), &taskapi.WaitRequest{ID: t.ID, ExecID: execID})
	return 0, fmt.Errorf("timeout %s exceeded: %w", timeout, context.DeadlineExceeded)
}

// execOutput reads an exec's stdout and stderr FIFOs.
type execOutput struct {
	stdoutPath, stderrPath string
	files                  []io.ReadCloser
	bufs                   [2]*limitedBuffer
	wg                     sync.WaitGroup
}

func openExecOutput(ctx context.Context, dir string) (*execOutput, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	o := &execOutput{stdoutPath: filepath.Join(dir, "stdout"), stderrPath: filepath.Join(dir, "stderr")}
	for i, p := range []string{o.stdoutPath, o.stderrPath} {
		f, err := fifo.OpenFifo(context.WithoutCancel(ctx), p, syscall.O_RDONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
		if err != nil {
			o.close()
			return nil, fmt.Errorf("exec output %s: %w", p, err)
		}
		o.files = append(o.files, f)
		o.bufs[i] = &limitedBuffer{max: maxExecOutput}
	}
	return o, nil
}

func (o *execOutput) start() {
	for i, f := range o.files {
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			_, _ = io.Copy(o.bufs[i], f)
		}()
	}
}

// wait returns the output once both streams ended, or what there is after
// timeout.
func (o *execOutput) wait(timeout time.Duration) ([]byte, []byte) {
	done := make(chan struct{})
	go func() { o.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		o.close()
		<-done
	}
	return o.bufs[0].bytes(), o.bufs[1].bytes()
}

func (o *execOutput) close() {
	for _, f := range o.files {
		f.Close()
	}
}

// limitedBuffer keeps the first max bytes written and drops the rest.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}
