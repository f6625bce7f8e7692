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
//  3. Delete deletes the task's init process in the shim, shuts the shim
//     down, and removes the bundle. When the shim is unreachable, Delete
//     runs `<shim> delete` in the bundle instead, as containerd does.
//
// Shims outlive berthd. New reconnects to the shims whose bundles it
// finds (through the bundle's `address` file); for a shim that is gone it
// runs the recorded binary's `delete` and removes the bundle.
package manager

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/berth-dev/berth/namespaces"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/anypb"
)

// RuncRuntime is the runtime name served by berth's own shim.
const RuncRuntime = "io.containerd.runc.v2"

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
}

// Manager tracks the shims of every namespace.
type Manager struct {
	cfg   Config
	mu    sync.Mutex
	tasks map[string]*Task // by ns + "/" + id
}

// New returns a manager; it creates cfg.State and reconnects to the shims
// of the bundles in it.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.ShimDir == "" {
		if exe, err := os.Executable(); err == nil {
			cfg.ShimDir = filepath.Dir(exe)
		}
	}
	if err := os.MkdirAll(cfg.State, 0o711); err != nil {
		return nil, fmt.Errorf("create task state %s: %w", cfg.State, err)
	}
	m := &Manager{cfg: cfg, tasks: map[string]*Task{}}
	m.load(ctx)
	return m, nil
}

// CreateOpts is what a task is created from.
type CreateOpts struct {
	// Runtime is the runtime name (io.containerd.runc.v2) and
	// RuntimeOptions its options, given to the shim at start.
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
	binary, err := m.shimBinary(opts.Runtime)
	if err != nil {
		return nil, err
	}
	b, err := newBundle(ctx, filepath.Join(m.cfg.State, ns, id), opts.Spec)
	if err != nil {
		return nil, err
	}
	t := &Task{ID: id, Namespace: ns, Bundle: b.path, binary: binary, log: b.log, m: m}
	defer func() {
		if retErr != nil {
			t.cleanup(context.WithoutCancel(ctx))
		}
	}()
	if err := os.WriteFile(filepath.Join(b.path, binaryFile), []byte(binary), 0o600); err != nil {
		return nil, fmt.Errorf("record shim binary: %w", err)
	}
	address, err := m.startShim(ctx, t, opts.RuntimeOptions)
	if err != nil {
		return nil, err
	}
	if err := t.connect(address); err != nil {
		return nil, err
	}
	resp, err := t.Client().Create(t.ShimContext(ctx), &taskapi.CreateTaskRequest{
		ID: id, Bundle: b.path, Rootfs: opts.Rootfs, Terminal: opts.Terminal,
		Stdin: opts.Stdin, Stdout: opts.Stdout, Stderr: opts.Stderr, Options: opts.Options,
	})
	if err != nil {
		return nil, fmt.Errorf("create task %q in shim: %w", id, ShimError(err))
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

// Delete deletes task id's init process, stops its shim and removes its
// bundle. It returns the shim's answer (pid, exit status and time).
func (m *Manager) Delete(ctx context.Context, id string) (*taskapi.DeleteResponse, error) {
	t, err := m.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	resp, err := t.Client().Delete(t.ShimContext(ctx), &taskapi.DeleteRequest{ID: id})
	if err != nil {
		if !unreachable(err) {
			return nil, fmt.Errorf("delete task %q: %w", id, ShimError(err))
		}
		// The shim is gone: let its binary clean up (runc delete, unmount).
		if resp, err = t.deleteDead(ctx); err != nil {
			return nil, err
		}
	}
	m.mu.Lock()
	delete(m.tasks, t.Namespace+"/"+id)
	m.mu.Unlock()
	t.cleanup(context.WithoutCancel(ctx))
	return resp, nil
}

// shimBinary resolves a runtime name to a shim executable.
func (m *Manager) shimBinary(runtime string) (string, error) {
	if runtime == RuncRuntime {
		if m.cfg.ShimDir != "" {
			p := filepath.Join(m.cfg.ShimDir, "berth-shim-runc-v2")
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
		return lookPath("berth-shim-runc-v2")
	}
	parts := strings.Split(runtime, ".")
	if len(parts) != 4 || parts[0] != "io" || parts[1] != "containerd" || parts[2] == "" || parts[3] == "" {
		return "", fmt.Errorf("runtime %q: not of the form io.containerd.<name>.<version>: %w", runtime, errdefs.ErrInvalidArgument)
	}
	return lookPath("containerd-shim-" + parts[2] + "-" + parts[3])
}
