package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/oci"
	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// containerKillTimeout bounds the wait for a container after SIGKILL.
const containerKillTimeout = 30 * time.Second

func (r *runtimeService) StartContainer(ctx context.Context, req *runtime.StartContainerRequest) (*runtime.StartContainerResponse, error) {
	ctx = withNamespace(ctx)
	c, err := r.s.getContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if err := r.s.startContainer(ctx, c); err != nil {
		return nil, err
	}
	return &runtime.StartContainerResponse{}, nil
}

// startContainer creates and starts the container's task with its output
// going to the log, and follows it. A failed start leaves the container
// exited with reason StartError, as containerd does.
func (s *Service) startContainer(ctx context.Context, c *container) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.meta.ID
	if st := c.getStatus(); st.State != stateCreated {
		return fmt.Errorf("start container %q: it is %s, not created: %w", id, st.State, errdefs.ErrFailedPrecondition)
	}
	sb, err := s.getSandbox(c.meta.SandboxID)
	if err != nil {
		return fmt.Errorf("start container %q: %w", id, err)
	}
	if !sb.getStatus().Ready {
		return fmt.Errorf("start container %q: pod sandbox %q is not ready: %w", id, sb.meta.ID, errdefs.ErrFailedPrecondition)
	}
	opts, err := s.containerTaskOptions(ctx, c)
	if err == nil {
		if err = s.runContainerTask(ctx, c, opts); err == nil {
			s.containerEvent(ctx, c, runtime.ContainerEventType_CONTAINER_STARTED_EVENT)
			return nil
		}
	}
	_ = s.setContainerStatus(c, func(st *containerStatus) {
		st.State, st.FinishedAt, st.ExitCode = stateExited, time.Now().UnixNano(), 128
		st.Reason, st.Message = reasonStartError, err.Error()
	})
	c.closeExited()
	return fmt.Errorf("start container %q: %w", id, err)
}

// containerTaskOptions reads the recorded spec and the snapshot's mounts
// and chooses where the output goes.
func (s *Service) containerTaskOptions(ctx context.Context, c *container) (taskOptions, error) {
	id := c.meta.ID
	rec, err := s.deps.Containers.Get(ctx, id)
	if err != nil {
		return taskOptions{}, err
	}
	var spec specs.Spec
	if err := json.Unmarshal(rec.Spec.GetValue(), &spec); err != nil {
		return taskOptions{}, fmt.Errorf("decode the recorded spec: %w", err)
	}
	mounts, err := s.deps.Snapshotter.Mounts(ctx, id)
	if err != nil {
		return taskOptions{}, err
	}
	o := taskOptions{handler: c.meta.Handler, spec: &spec, rootfs: mounts, tty: c.config.GetTty()}
	return o, nil
}

// runContainerTask connects the output, starts the task, records it
// running and follows it. The status is written before the task is
// followed: a process that exits at once must not have its exit
// overwritten.
func (s *Service) runContainerTask(ctx context.Context, c *container, o taskOptions) error {
	id := c.meta.ID
	if err := os.MkdirAll(s.containerState(id), 0o711); err != nil {
		return err
	}
	var copier *fifoCopier
	// Containers with stdin or a terminal keep their stdio in berthd,
	// where Attach can join it (stream_attach.go).
	attachable := o.tty || c.config.GetStdin()
	switch {
	case c.meta.LogPath == "" && !attachable:
	case attachable || s.deps.LoggerBinary == "":
		var err error
		if copier, err = s.newFifoCopier(ctx, c, o.tty, c.config.GetStdin()); err != nil {
			return err
		}
		o.stdin, o.stdout, o.stderr = copier.stdinPath, copier.stdout, copier.stderr
	default:
		uri := loggerURI(s.deps.LoggerBinary, c.meta.LogPath, s.loggerPidFile(id), s.cfg.MaxContainerLogLineSize)
		o.stdout, o.stderr = uri, uri
	}
	t, err := s.startTask(ctx, id, o)
	if err != nil {
		copier.close()
		return err
	}
	c.setCopier(copier)
	copier.start()
	err = s.setContainerStatus(c, func(st *containerStatus) {
		st.State, st.Pid, st.StartedAt = stateRunning, t.Pid, time.Now().UnixNano()
	})
	if err != nil {
		s.deleteTaskNow(ctx, id)
		return err
	}
	s.waitTask(ctx, t, func(e exit) { s.containerExited(ctx, c, e) })
	return nil
}

func (s *Service) loggerPidFile(id string) string {
	return filepath.Join(s.containerState(id), "logger.pid")
}

func (c *container) closeExited() {
	c.smu.Lock()
	defer c.smu.Unlock()
	select {
	case <-c.exited:
	default:
		close(c.exited)
	}
}

// containerExited records the end of the container's process: exit code,
// time and reason (OOMKilled when the OOM killer ended it), and deletes
// the task.
func (s *Service) containerExited(ctx context.Context, c *container, e exit) {
	if e.lost && s.stopping.Load() {
		return // berthd is going away, not the container
	}
	c.smu.Lock()
	select {
	case <-c.exited:
		c.smu.Unlock()
		return
	default:
	}
	st := &c.status
	st.State, st.FinishedAt, st.ExitCode = stateExited, e.at.UnixNano(), int32(e.code)
	switch {
	case c.oom:
		st.Reason = reasonOOMKilled
	case e.lost:
		st.Reason, st.Message = reasonUnknown, "the container's shim went away without reporting its exit"
	case e.code == 0:
		st.Reason = reasonCompleted
	default:
		st.Reason = reasonError
	}
	err := writeJSON(s.containerStatusPath(c.meta.ID), c.status)
	close(c.exited)
	c.smu.Unlock()
	if err != nil {
		log.G(ctx).Warn("CRI: record container exit", "id", c.meta.ID, "error", err)
	}
	s.deleteTask(context.WithoutCancel(ctx), c.meta.ID)
	s.containerEvent(ctx, c, runtime.ContainerEventType_CONTAINER_STOPPED_EVENT)
}

// containerOOM marks container id as killed by the OOM killer; when its
// exit is recorded already, the reason is corrected.
func (s *Service) containerOOM(ctx context.Context, id string) {
	c, err := s.containers.get(id)
	if err != nil || c.meta.ID != id {
		return
	}
	c.smu.Lock()
	defer c.smu.Unlock()
	c.oom = true
	if c.status.State == stateExited && c.status.Reason != reasonOOMKilled && c.status.Reason != reasonStartError {
		c.status.Reason = reasonOOMKilled
		if err := writeJSON(s.containerStatusPath(id), c.status); err != nil {
			log.G(ctx).Warn("CRI: record OOM kill", "id", id, "error", err)
		}
	}
}

func (r *runtimeService) StopContainer(ctx context.Context, req *runtime.StopContainerRequest) (*runtime.StopContainerResponse, error) {
	ctx = withNamespace(ctx)
	c, err := r.s.getContainer(req.GetContainerId())
	if errdefs.IsNotFound(err) {
		return &runtime.StopContainerResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	if err := r.s.stopContainer(ctx, c, req.GetTimeout()); err != nil {
		return nil, err
	}
	return &runtime.StopContainerResponse{}, nil
}

// stopContainer sends the container's stop signal (the image's, else
// SIGTERM), gives it timeout seconds, then SIGKILLs every process of it
// and waits for the exit to be recorded. A container not running is
// stopped already.
func (s *Service) stopContainer(ctx context.Context, c *container, timeout int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.getStatus().State != stateRunning {
		return nil
	}
	id := c.meta.ID
	if _, err := s.deps.Tasks.Get(ctx, id); errdefs.IsNotFound(err) {
		s.containerExited(ctx, c, exit{code: unknownExitCode, at: time.Now(), lost: true})
		return nil
	}
	if timeout > 0 {
		sig := syscall.SIGTERM
		if c.meta.StopSignal != "" {
			if parsed, err := oci.ParseSignal(c.meta.StopSignal); err == nil {
				sig = parsed
			}
		}
		if err := s.killTask(ctx, id, sig, false); err != nil {
			return fmt.Errorf("stop container %q: %w", id, err)
		}
		select {
		case <-c.exited:
			return nil
		case <-time.After(time.Duration(timeout) * time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := s.killTask(ctx, id, syscall.SIGKILL, true); err != nil {
		return fmt.Errorf("stop container %q: %w", id, err)
	}
	select {
	case <-c.exited:
		return nil
	case <-time.After(containerKillTimeout):
		return fmt.Errorf("stop container %q: not gone %s after SIGKILL: %w", id, containerKillTimeout, errdefs.ErrUnavailable)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *runtimeService) RemoveContainer(ctx context.Context, req *runtime.RemoveContainerRequest) (*runtime.RemoveContainerResponse, error) {
	ctx = withNamespace(ctx)
	c, err := r.s.getContainer(req.GetContainerId())
	if errdefs.IsNotFound(err) {
		return &runtime.RemoveContainerResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	if err := r.s.removeContainer(ctx, c); err != nil {
		return nil, err
	}
	return &runtime.RemoveContainerResponse{}, nil
}

// removeContainer kills a running container, then removes its record,
// snapshot and files. The log file stays: it is the kubelet's.
func (s *Service) removeContainer(ctx context.Context, c *container) error {
	if err := s.stopContainer(ctx, c, 0); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.meta.ID
	s.deleteTask(ctx, id)
	if err := s.deps.Containers.Delete(ctx, id); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %q: %w", id, err)
	}
	if err := s.deps.Snapshotter.Remove(ctx, id); err != nil && !errdefs.IsNotFound(err) {
		log.G(ctx).Warn("CRI: remove container snapshot", "id", id, "error", err)
	}
	s.releaseImageVolumes(ctx, id)
	for _, dir := range []string{s.containerRoot(id), s.containerState(id)} {
		if err := os.RemoveAll(dir); err != nil {
			log.G(ctx).Warn("CRI: remove container files", "id", id, "error", err)
		}
	}
	s.containers.remove(id)
	s.containers.release(c.meta.Name)
	s.cpu.forget(id)
	s.containerEvent(ctx, c, runtime.ContainerEventType_CONTAINER_DELETED_EVENT)
	return nil
}

// fifoCopier copies a container's output from FIFOs into its log inside
// berthd: for containers with a terminal or stdin, and when no logging
// binary is configured. Attach sessions join its output and stdin.
type fifoCopier struct {
	stdinPath      string
	stdout, stderr string
	w              *logWriter               // nil without a log path
	files          map[string]io.ReadCloser // stream -> read end
	attach         *attachIO
}

// newFifoCopier creates the FIFOs and opens their read ends (without
// blocking, so the shim's open does not either) and the log; with stdin
// also the stdin FIFO's write end, which berthd keeps open for attach
// sessions.
func (s *Service) newFifoCopier(ctx context.Context, c *container, tty, stdin bool) (*fifoCopier, error) {
	dir := filepath.Join(s.containerState(c.meta.ID), "io")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	fc := &fifoCopier{files: map[string]io.ReadCloser{}, stdout: filepath.Join(dir, "stdout"), attach: newAttachIO(tty, c.config.GetStdinOnce())}
	if c.meta.LogPath != "" {
		w, err := openLog(c.meta.LogPath, s.cfg.MaxContainerLogLineSize)
		if err != nil {
			return nil, err
		}
		fc.w = w
	}
	streams := map[string]string{streamStdout: fc.stdout}
	if !tty {
		fc.stderr = filepath.Join(dir, "stderr")
		streams[streamStderr] = fc.stderr
	}
	for stream, path := range streams {
		f, err := fifo.OpenFifo(context.WithoutCancel(ctx), path, syscall.O_RDONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
		if err != nil {
			fc.close()
			return nil, fmt.Errorf("container %q: open %s: %w", c.meta.ID, path, err)
		}
		fc.files[stream] = f
	}
	if stdin {
		fc.stdinPath = filepath.Join(dir, "stdin")
		f, err := fifo.OpenFifo(context.WithoutCancel(ctx), fc.stdinPath, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
		if err != nil {
			fc.close()
			return nil, fmt.Errorf("container %q: open %s: %w", c.meta.ID, fc.stdinPath, err)
		}
		fc.attach.setStdin(f)
	}
	return fc, nil
}

// start copies each stream until its writers are gone, to the log and
// to the attach sessions.
func (fc *fifoCopier) start() {
	if fc == nil {
		return
	}
	remaining := make(chan struct{}, len(fc.files))
	for stream, f := range fc.files {
		go func() {
			r := io.TeeReader(f, fc.attach.output(stream))
			if fc.w != nil {
				fc.w.copyStream(stream, r)
			} else {
				_, _ = io.Copy(io.Discard, r)
			}
			f.Close()
			remaining <- struct{}{}
		}()
	}
	go func() {
		for range fc.files {
			<-remaining
		}
		fc.attach.closeStdin()
		fc.attach.end()
		if fc.w != nil {
			fc.w.close()
		}
	}()
}

func (fc *fifoCopier) close() {
	if fc == nil {
		return
	}
	for _, f := range fc.files {
		f.Close()
	}
	fc.attach.closeStdin()
	fc.attach.end()
	if fc.w != nil {
		fc.w.close()
	}
}
