package manager

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/namespaces"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// shimTimeout bounds `start` and `delete` runs of a shim binary.
const shimTimeout = 30 * time.Second

// Task is one task and the shim that runs it.
type Task struct {
	ID, Namespace, Bundle string
	// Pid is the init process's pid, as the shim's Create reported it.
	Pid uint32
	// RuntimeType (io.containerd.runc.v2) and Handler (runc) are what the
	// container's runtime name resolved to.
	RuntimeType, Handler string
	// deleting is set, under the manager's mu, while a Delete runs.
	deleting bool

	binary string
	log    *os.File
	conn   net.Conn
	client *ttrpc.Client
	task   taskapi.TaskService
	m      *Manager
}

// Client returns the shim's task API. Its errors are gRPC statuses; map
// them with ShimError. Calls need the context of ShimContext.
func (t *Task) Client() taskapi.TaskService { return t.task }

// ShimContext adds the task's namespace as ttrpc metadata, as shims expect.
func (t *Task) ShimContext(ctx context.Context) context.Context {
	return ttrpc.WithMetadata(namespaces.WithNamespace(ctx, t.Namespace),
		ttrpc.MD{namespaces.TTRPCHeader: []string{t.Namespace}})
}

// ShimError turns a shim's gRPC status into an errdefs class.
func ShimError(err error) error {
	if err == nil {
		return nil
	}
	if unreachable(err) {
		return fmt.Errorf("shim unreachable: %w: %w", errdefs.ErrUnavailable, err)
	}
	return errgrpc.ToNative(err)
}

func unreachable(err error) bool {
	return errors.Is(err, ttrpc.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

type bundle struct {
	path string
	log  *os.File
}

// newBundle creates the bundle directory with config.json, rootfs/ and the
// log FIFO, opened read-write so that opening never blocks and reading
// never sees EOF while the shim restarts its writer.
func newBundle(ctx context.Context, path string, spec []byte) (*bundle, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, fmt.Errorf("create bundle parent: %w", err)
	}
	if err := os.Mkdir(path, 0o711); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("bundle %s exists (a task berthd lost track of?): %w", path, errdefs.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("create bundle: %w", err)
	}
	b := &bundle{path: path}
	err := func() error {
		if err := os.WriteFile(filepath.Join(path, "config.json"), spec, 0o600); err != nil {
			return err
		}
		if err := os.Mkdir(filepath.Join(path, "rootfs"), 0o711); err != nil {
			return err
		}
		logPath := filepath.Join(path, "log")
		if err := unix.Mkfifo(logPath, 0o600); err != nil {
			return fmt.Errorf("mkfifo %s: %w", logPath, err)
		}
		f, err := os.OpenFile(logPath, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		b.log = f
		return nil
	}()
	if err != nil {
		_ = os.RemoveAll(path)
		return nil, fmt.Errorf("prepare bundle %s: %w", path, err)
	}
	go copyLog(log.G(ctx).With("bundle", path), b.log)
	return b, nil
}

// copyLog copies the shim's log lines into berthd's log until f is closed.
func copyLog(l interface{ Info(string, ...any) }, f *os.File) {
	s := bufio.NewScanner(f)
	for s.Scan() {
		l.Info("shim: " + s.Text())
	}
}

// startShim runs `<shim> start` in the bundle and returns the address the
// shim prints. berth's own shim gets BootstrapParams (containerd 2.3's
// form) and answers with a BootstrapResult; external shims get the legacy
// form, the runtime options on stdin and a plain address back, which every
// shim understands (newer shims tell the forms apart themselves).
func (m *Manager) startShim(ctx context.Context, t *Task, opts *anypb.Any, own bool) (string, error) {
	var stdin []byte
	if own {
		stdin = encodeParams(t, m.cfg, opts)
	} else if opts != nil {
		var err error
		if stdin, err = proto.Marshal(opts); err != nil {
			return "", fmt.Errorf("marshal runtime options: %w", err)
		}
	}
	out, err := m.runShim(ctx, t, "start", stdin)
	if err != nil {
		return "", err
	}
	address := strings.TrimSpace(string(out))
	if !strings.HasPrefix(address, "unix://") {
		if address, err = decodeResult(out); err != nil {
			return "", fmt.Errorf("shim %s start printed %q: neither a unix:// address nor a BootstrapResult: %w", t.binary, out, err)
		}
	}
	return address, nil
}

func (m *Manager) runShim(ctx context.Context, t *Task, action string, stdin []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, shimTimeout)
	defer cancel()
	args := []string{"-namespace", t.Namespace, "-id", t.ID, "-address", m.cfg.GRPCAddress}
	if action == "delete" {
		args = append(args, "-bundle", t.Bundle)
	}
	cmd := exec.CommandContext(ctx, t.binary, append(args, action)...)
	cmd.Dir = t.Bundle
	cmd.Env = append(os.Environ(), "TTRPC_ADDRESS="+m.cfg.TTRPCAddress, "GRPC_ADDRESS="+m.cfg.GRPCAddress, "NAMESPACE="+t.Namespace)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("shim %s %s for task %q: %w: %s", t.binary, action, t.ID, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (t *Task) connect(address string) error {
	conn, err := net.DialTimeout("unix", strings.TrimPrefix(address, "unix://"), 10*time.Second)
	if err != nil {
		return fmt.Errorf("connect to shim at %s: %w", address, err)
	}
	t.conn = conn
	t.client = ttrpc.NewClient(conn)
	t.task = taskapi.NewTaskClient(t.client)
	return nil
}

// deleteDead runs `<shim> delete` for a task whose shim is gone.
func (t *Task) deleteDead(ctx context.Context) (*taskapi.DeleteResponse, error) {
	out, err := t.m.runShim(ctx, t, "delete", nil)
	if err != nil {
		return nil, err
	}
	var resp taskapi.DeleteResponse
	if err := proto.Unmarshal(out, &resp); err != nil {
		return nil, fmt.Errorf("shim delete of task %q: bad response: %w", t.ID, err)
	}
	return &resp, nil
}

// cleanup shuts the shim down (if connected), closes the connection and
// log, and removes the bundle, unmounting a rootfs a failed create left.
func (t *Task) cleanup(ctx context.Context) {
	t.stopShim(ctx)
	if t.log != nil {
		_ = t.log.Close()
	}
	removeBundle(ctx, t.Bundle)
}

// shimStopTimeout bounds the wait for a shim to close its connection
// after Shutdown; a shim that keeps it (it still serves other tasks) is
// simply left.
const shimStopTimeout = 2 * time.Second

// stopShim asks a connected shim to shut down, waits until it has closed
// the connection — by then its listener is closed too, so that a `start`
// for the same id gets a new shim — and closes the client.
func (t *Task) stopShim(ctx context.Context) {
	if t.client == nil {
		return
	}
	if t.task != nil {
		sctx, cancel := context.WithTimeout(t.ShimContext(ctx), 5*time.Second)
		_, err := t.task.Shutdown(sctx, &taskapi.ShutdownRequest{ID: t.ID})
		cancel()
		if err == nil {
			wctx, cancel := context.WithTimeout(ctx, shimStopTimeout)
			_ = t.client.UserOnCloseWait(wctx)
			cancel()
		}
	}
	_ = t.client.Close()
}

// removeBundle removes a bundle directory, unmounting first whatever is
// mounted below it (a rootfs a failed create or a crash left); a bundle
// that cannot be unmounted is left rather than removed through a mount.
func removeBundle(ctx context.Context, dir string) {
	if err := mount.UnmountAll(dir, unix.MNT_DETACH); err != nil {
		log.G(ctx).Warn("bundle not removed: unmount", "bundle", dir, "error", err)
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		log.G(ctx).Warn("remove bundle", "bundle", dir, "error", err)
	}
}

func lookPath(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("shim binary %s not found in PATH (%s): install it or set runtime_path: %w", name, os.Getenv("PATH"), errdefs.ErrNotFound)
	}
	return p, nil
}
