// Package manager launches and tracks the shims that run berthd's tasks:
// one shim per task, speaking the shim v2 task API
// (containerd.task.v2.Task) over ttrpc.
//
// # Lifecycle
//
//  1. Create prepares the bundle <state>/<ns>/<id> (config.json from the
//     container's spec, an empty rootfs/ and the `log` FIFO, opened for
//     reading before the shim starts so that its log lines reach berthd's
//     log), runs `<shim> start` in it, connects to the address the shim
//     prints and asks the shim to create the task. Any failure undoes all
//     of this.
//  2. Get and List return the running shims; callers drive the task with
//     Task.Client (Start, Kill, Exec, Wait, ...). The shim forwards the
//     task's events to the daemon's ttrpc Events service by itself.
//  3. Delete deletes the task's init process in the shim (when the shim is
//     unreachable it runs `<shim> delete` in the bundle instead, as
//     containerd does), moves the bundle into the trash and answers. The
//     shim is shut down and the bundle removed after the answer; a Create
//     of the same id waits until the old shim has let go of its socket,
//     which the new shim would otherwise be handed.
//
// Shims outlive berthd. New first finishes what a previous berthd left in
// the trash (stops the shims, unmounts, removes), then reconnects to the
// shims whose bundles it finds (through the bundle's `address` file); for
// a shim that is gone it runs the recorded binary's `delete` and removes
// the bundle.
package manager

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/events"
	"github.com/berth-dev/berth/namespaces"
	"github.com/berth-dev/berth/runtime/handler"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/anypb"
)

// RuncRuntime is the runtime name served by berth's own shim.
const RuncRuntime = handler.RuncV2

// ownShim is the file name of berth's shim.
const ownShim = "berth-shim-runc-v2"

// Config says where the manager keeps bundles and how shims reach berthd.
type Config struct {
	// State is the directory of bundles (<State>/<ns>/<id>).
	State string
	// GRPCAddress and TTRPCAddress are berthd's sockets, passed to shims.
	GRPCAddress  string
	TTRPCAddress string
	// ShimDir is searched for berth-shim-runc-v2 before PATH; default the
	// directory of the running executable.
	ShimDir string
	// Handlers resolves runtime handler names (runc, runsc, a configured
	// CRI runtime); nil means the built-in handlers only.
	Handlers *handler.Table
	// Publisher receives /tasks/exit for tasks found dead at start-up.
	Publisher events.Publisher
}

// Manager tracks the shims of every namespace.
type Manager struct {
	cfg   Config
	mu    sync.Mutex
	tasks map[string]*Task // by ns + "/" + id
	// stopping holds, by ns + "/" + id, a channel closed once the shim of
	// a deleted task has closed its socket; Create waits for it.
	stopping map[string]chan struct{}
	// retiring counts the deleted tasks still being cleaned up; closing
	// ends their wait before removing bundles.
	retiring  sync.WaitGroup
	closing   chan struct{}
	closeOnce sync.Once
	// trashSeq makes the names of trashed bundles unique.
	trashSeq atomic.Int64
}

// New returns a manager; it creates cfg.State, finishes the clean-ups a
// previous berthd left in its trash and reconnects to the shims of the
// bundles in it.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.ShimDir == "" {
		if exe, err := os.Executable(); err == nil {
			cfg.ShimDir = filepath.Dir(exe)
		}
	}
	if err := os.MkdirAll(cfg.State, 0o711); err != nil {
		return nil, fmt.Errorf("create task state %s: %w", cfg.State, err)
	}
	m := &Manager{cfg: cfg, tasks: map[string]*Task{}, stopping: map[string]chan struct{}{}, closing: make(chan struct{})}
	m.trashSeq.Store(time.Now().UnixNano())
	m.emptyTrash(ctx)
	m.load(ctx)
	return m, nil
}

// CreateOpts is what a task is created from.
type CreateOpts struct {
	// Runtime is the container's runtime: a runtime type
	// (io.containerd.runc.v2) or a handler name (runsc); "" is the default
	// handler. RuntimeOptions are its options, given to the shim at start;
	// nil takes the handler's.
	Runtime        string
	RuntimeOptions *anypb.Any
	// Spec is the OCI runtime spec JSON, written as config.json.
	Spec []byte
	// Rootfs are the mounts the shim mounts on bundle/rootfs.
	Rootfs                []*types.Mount
	Stdin, Stdout, Stderr string
	Terminal              bool
	// Options are the task's create options (e.g. runc options).
	Options *anypb.Any
}

// Create starts a shim for task id of the context's namespace and creates
// the task in it. It fails with AlreadyExists when the task exists.
func (m *Manager) Create(ctx context.Context, id string, opts CreateOpts) (*Task, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	key := ns + "/" + id
	m.mu.Lock()
	for m.stopping[key] != nil {
		done := m.stopping[key]
		m.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, fmt.Errorf("task %q in namespace %q: the shim of its previous task is still stopping: %w", id, ns, ctx.Err())
		}
		m.mu.Lock()
	}
	if _, ok := m.tasks[key]; ok {
		m.mu.Unlock()
		return nil, fmt.Errorf("task %q in namespace %q: %w", id, ns, errdefs.ErrAlreadyExists)
	}
	m.tasks[key] = nil // reserved while the shim starts
	m.mu.Unlock()

	t, err := m.create(ctx, ns, id, opts)
	m.mu.Lock()
	if err != nil {
		delete(m.tasks, key)
	} else {
		m.tasks[key] = t
	}
	m.mu.Unlock()
	return t, err
}

func (m *Manager) create(ctx context.Context, ns, id string, opts CreateOpts) (_ *Task, retErr error) {
	h, err := m.cfg.Handlers.Lookup(opts.Runtime)
	if err != nil {
		return nil, err
	}
	if opts.RuntimeOptions == nil {
		if opts.RuntimeOptions, err = h.OptionsAny(); err != nil {
			return nil, err
		}
	}
	binary, own, err := m.shimBinary(h)
	if err != nil {
		return nil, err
	}
	b, err := newBundle(ctx, filepath.Join(m.cfg.State, ns, id), opts.Spec)
	if err != nil {
		return nil, err
	}
	t := &Task{ID: id, Namespace: ns, Bundle: b.path, RuntimeType: h.RuntimeType, Handler: h.Name, binary: binary, log: b.log, m: m}
	defer func() {
		if retErr != nil {
			t.cleanup(context.WithoutCancel(ctx))
		}
	}()
	if err := t.writeRecord(); err != nil {
		return nil, err
	}
	address, err := m.startShim(ctx, t, opts.RuntimeOptions, own)
	if err != nil {
		return nil, err
	}
	if err := t.connect(address); err != nil {
		return nil, err
	}
	// As containerd: the task's own options, else the runtime's.
	taskOpts := opts.Options
	if taskOpts == nil || len(taskOpts.GetValue()) == 0 {
		taskOpts = opts.RuntimeOptions
	}
	resp, err := t.Client().Create(t.ShimContext(ctx), &taskapi.CreateTaskRequest{
		ID: id, Bundle: b.path, Rootfs: opts.Rootfs, Terminal: opts.Terminal,
		Stdin: opts.Stdin, Stdout: opts.Stdout, Stderr: opts.Stderr, Options: taskOpts,
	})
	if err != nil {
		return nil, fmt.Errorf("create task %q in shim %s (runtime %s): %w", id, binary, h.RuntimeType, ShimError(err))
	}
	t.Pid = resp.Pid
	return t, nil
}

// Get returns task id of the context's namespace, or NotFound.
func (m *Manager) Get(ctx context.Context, id string) (*Task, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	t := m.tasks[ns+"/"+id]
	m.mu.Unlock()
	if t == nil {
		return nil, fmt.Errorf("task %q in namespace %q: %w", id, ns, errdefs.ErrNotFound)
	}
	return t, nil
}

// List returns the tasks of the context's namespace.
func (m *Manager) List(ctx context.Context) ([]*Task, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var ts []*Task
	for _, t := range m.tasks {
		if t != nil && t.Namespace == ns {
			ts = append(ts, t)
		}
	}
	return ts, nil
}

// Delete deletes task id's init process and returns the shim's answer
// (pid, exit status and time); the shim is stopped and the bundle removed
// after it returns (see retire).
func (m *Manager) Delete(ctx context.Context, id string) (*taskapi.DeleteResponse, error) {
	t, err := m.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	// One Delete at a time: a second one (the CRI's exit handler and a
	// RemoveContainer, say) finds the task already going.
	m.mu.Lock()
	if t.deleting {
		m.mu.Unlock()
		return nil, fmt.Errorf("task %q in namespace %q is being deleted: %w", id, t.Namespace, errdefs.ErrNotFound)
	}
	t.deleting = true
	m.mu.Unlock()
	resp, err := t.Client().Delete(t.ShimContext(ctx), &taskapi.DeleteRequest{ID: id})
	if err != nil && unreachable(err) {
		// The shim is gone: let its binary clean up (runc delete, unmount).
		resp, err = t.deleteDead(ctx)
	} else if err != nil {
		err = fmt.Errorf("delete task %q: %w", id, ShimError(err))
	}
	if err != nil {
		m.mu.Lock()
		t.deleting = false
		m.mu.Unlock()
		return nil, err
	}
	m.retire(context.WithoutCancel(ctx), t)
	return resp, nil
}

// Close finishes the clean-ups of deleted tasks under way. The shims of
// live tasks keep running: the next berthd reconnects to them.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() { close(m.closing) })
	m.retiring.Wait()
	return nil
}

// shimBinary resolves a handler to a shim executable; own reports berth's
// own shim. runtime_path wins; io.containerd.runc.v2 is berth's shim;
// io.containerd.runsc.v1 is gVisor's containerd-shim-runsc-v1 when it is
// in PATH and berth's shim (driving runsc) otherwise; any other type is
// containerd-shim-<name>-<version> from PATH.
func (m *Manager) shimBinary(h *handler.Handler) (path string, own bool, err error) {
	if h.RuntimePath != "" {
		if _, err := os.Stat(h.RuntimePath); err != nil {
			return "", false, fmt.Errorf("runtime handler %q: runtime_path %s: %w: %w", h.Name, h.RuntimePath, errdefs.ErrNotFound, err)
		}
		return h.RuntimePath, filepath.Base(h.RuntimePath) == ownShim, nil
	}
	name, err := handler.ShimName(h.RuntimeType)
	if err != nil {
		return "", false, err
	}
	switch h.RuntimeType {
	case handler.RuncV2:
		path, err := m.ownShim()
		return path, err == nil, err
	case handler.RunscV1:
		if p, err := exec.LookPath(name); err == nil {
			return p, false, nil
		}
		path, err := m.ownShim()
		return path, err == nil, err
	}
	path, err = lookPath(name)
	if err != nil {
		return "", false, fmt.Errorf("runtime handler %q (%s): %w", h.Name, h.RuntimeType, err)
	}
	return path, false, nil
}

// ownShim is berth-shim-runc-v2 next to berthd, else from PATH.
func (m *Manager) ownShim() (string, error) {
	if m.cfg.ShimDir != "" {
		p := filepath.Join(m.cfg.ShimDir, ownShim)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return lookPath(ownShim)
}
