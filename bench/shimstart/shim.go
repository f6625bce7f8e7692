package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/fifo"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// namespace of every task the bench starts.
const namespace = "shimstart"

// nsHeader carries the namespace on ttrpc calls, as the daemon sends it.
const nsHeader = "containerd-namespace-ttrpc"

// env is what both shims are started in: a scratch directory standing in
// for the daemon's state (its fake address and an events sink on the ttrpc
// address) and a runc root.
type env struct {
	dir      string
	address  string // the daemon's gRPC address, as -address
	ttrpc    string // where the shims publish events (TTRPC_ADDRESS)
	runcRoot string
	rootfs   string // a busybox rootfs for the idle container
	options  []byte // runc options Any, on the shims' stdin
	stop     func()
}

func newEnv(dir string) (*env, error) {
	e := &env{
		dir:      dir,
		address:  filepath.Join(dir, "d.sock"),
		ttrpc:    filepath.Join(dir, "d.sock.ttrpc"),
		runcRoot: filepath.Join(dir, "runc"),
		rootfs:   filepath.Join(dir, "rootfs"),
	}
	a, err := typeurl.MarshalAnyToProto(&options.Options{Root: e.runcRoot})
	if err != nil {
		return nil, err
	}
	if e.options, err = proto.Marshal(a); err != nil {
		return nil, err
	}
	if err := makeRootfs(e.rootfs); err != nil {
		return nil, err
	}
	e.stop, err = serveEvents(e.ttrpc)
	return e, err
}

// serveEvents plays the daemon's ttrpc Events service, which drops what
// it is sent.
func serveEvents(path string) (func(), error) {
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		l.Close()
		return nil, err
	}
	eventsapi.RegisterEventsService(srv, sink{})
	go srv.Serve(context.Background(), l)
	return func() { srv.Close() }, nil
}

type sink struct{}

func (sink) Forward(context.Context, *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

// makeRootfs lays out the static busybox and a sleep applet.
func makeRootfs(root string) error {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("the idle container needs busybox: %w", err)
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		return err
	}
	return os.Symlink("busybox", filepath.Join(root, "bin", "sleep"))
}

// shim is one running shim server.
type shim struct {
	id      string
	bundle  string
	pid     int
	logs    io.Closer
	client  *ttrpc.Client
	service taskapi.TaskService
}

// openLog makes the bundle's log FIFO and reads it, as the daemon does
// before start: containerd's shim does not start without a reader there.
func openLog(bundle string) (io.Closer, error) {
	r, err := fifo.OpenFifo(context.Background(), filepath.Join(bundle, "log"), syscall.O_RDONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
	if err != nil {
		return nil, err
	}
	go func() { _, _ = io.Copy(io.Discard, r) }()
	return r, nil
}

// timing is how long a start took: until `start` printed the address and
// exited, and until the server answered Connect.
type timing struct {
	printed, ready time.Duration
}

// start runs `binary start` for task id in a new bundle, as the daemon does
// with the legacy bootstrap (runtime options on stdin, the address on
// stdout), connects and calls Connect: the shim is then ready.
func (e *env) start(ctx context.Context, binary, id string, spec *specs.Spec) (*shim, timing, error) {
	bundle := filepath.Join(e.dir, "bundles", id)
	if err := os.MkdirAll(filepath.Join(bundle, "rootfs"), 0o711); err != nil {
		return nil, timing{}, err
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, timing{}, err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		return nil, timing{}, err
	}
	logs, err := openLog(bundle)
	if err != nil {
		return nil, timing{}, err
	}
	began := time.Now()
	cmd := exec.CommandContext(ctx, binary, "-namespace", namespace, "-id", id, "-address", e.address, "start")
	cmd.Dir = bundle
	cmd.Env = append(os.Environ(), "TTRPC_ADDRESS="+e.ttrpc)
	cmd.Stdin = bytes.NewReader(e.options)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	printed := time.Since(began)
	if err != nil {
		logs.Close()
		return nil, timing{}, fmt.Errorf("%s start: %w: %s", binary, err, bytes.TrimSpace(stderr.Bytes()))
	}
	address := strings.TrimPrefix(strings.TrimSpace(string(out)), "unix://")
	conn, err := net.Dial("unix", address)
	if err != nil {
		logs.Close()
		return nil, timing{}, fmt.Errorf("%s: dial %s: %w", binary, address, err)
	}
	s := &shim{id: id, bundle: bundle, logs: logs, client: ttrpc.NewClient(conn)}
	s.service = taskapi.NewTaskClient(s.client)
	resp, err := s.service.Connect(withNS(ctx), &taskapi.ConnectRequest{ID: id})
	if err != nil {
		s.client.Close()
		logs.Close()
		return nil, timing{}, fmt.Errorf("%s: Connect: %w", binary, err)
	}
	took := timing{printed: printed, ready: time.Since(began)}
	s.pid = int(resp.ShimPid)
	return s, took, nil
}

func withNS(ctx context.Context) context.Context {
	return ttrpc.WithMetadata(ctx, ttrpc.MD{nsHeader: []string{namespace}})
}

// stop shuts the shim down and waits until it is gone.
func (s *shim) stop(ctx context.Context) error {
	_, _ = s.service.Shutdown(withNS(ctx), &taskapi.ShutdownRequest{ID: s.id, Now: true})
	s.client.Close()
	defer s.logs.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if gone(s.pid) {
			return os.RemoveAll(s.bundle)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = syscall.Kill(s.pid, syscall.SIGKILL)
	return fmt.Errorf("shim %d still running 10s after Shutdown", s.pid)
}

// gone reports whether pid has exited: the shims are not the bench's
// children (start's exit re-parents them), so a zombie counts as gone.
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err != nil || bytes.Contains(stat, []byte(") Z "))
}

// runIdle creates and starts a sleeping container in the shim's bundle.
func (s *shim) runIdle(ctx context.Context, e *env) error {
	a, err := typeurl.MarshalAnyToProto(&options.Options{Root: e.runcRoot})
	if err != nil {
		return err
	}
	ctx = withNS(ctx)
	_, err = s.service.Create(ctx, &taskapi.CreateTaskRequest{
		ID:      s.id,
		Bundle:  s.bundle,
		Rootfs:  []*types.Mount{{Type: "bind", Source: e.rootfs, Options: []string{"rbind", "ro"}}},
		Options: a,
	})
	if err != nil {
		return fmt.Errorf("Create: %w", err)
	}
	if _, err := s.service.Start(ctx, &taskapi.StartRequest{ID: s.id}); err != nil {
		return fmt.Errorf("Start: %w", err)
	}
	return nil
}

// removeIdle kills and deletes the container.
func (s *shim) removeIdle(ctx context.Context) error {
	ctx = withNS(ctx)
	if _, err := s.service.Kill(ctx, &taskapi.KillRequest{ID: s.id, Signal: uint32(syscall.SIGKILL)}); err != nil {
		return fmt.Errorf("Kill: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := s.service.Wait(wctx, &taskapi.WaitRequest{ID: s.id}); err != nil {
		return fmt.Errorf("Wait: %w", err)
	}
	if _, err := s.service.Delete(ctx, &taskapi.DeleteRequest{ID: s.id}); err != nil {
		return fmt.Errorf("Delete: %w", err)
	}
	return nil
}

// idleSpec is a container sleeping in its own namespaces.
func idleSpec(id string) *specs.Spec {
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs", Readonly: true},
		Process: &specs.Process{Args: []string{"sleep", "3600"}, Env: []string{"PATH=/bin"}, Cwd: "/"},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "mode=755"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/shimstart/" + id,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
		},
	}
}

// memory is one reading of a shim's memory, in KiB.
type memory struct {
	RSS, Anon, PSS int64
}

// readMemory reads VmRSS and RssAnon from /proc/PID/status and Pss from
// /proc/PID/smaps_rollup.
func readMemory(pid int) (memory, error) {
	status, err := readKV(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	rollup, err := readKV(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return memory{}, err
	}
	m := memory{RSS: status["VmRSS"], Anon: status["RssAnon"], PSS: rollup["Pss"]}
	if m.RSS == 0 {
		return m, fmt.Errorf("pid %d: no VmRSS (gone?)", pid)
	}
	return m, nil
}

func readKV(path string) (map[string]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseKV(f)
}

// parseKV reads "Key:   123 kB" lines; others are skipped.
func parseKV(r io.Reader) (map[string]int64, error) {
	kv := map[string]int64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		if n, err := strconv.ParseInt(fields[0], 10, 64); err == nil {
			kv[key] = n
		}
	}
	return kv, sc.Err()
}
