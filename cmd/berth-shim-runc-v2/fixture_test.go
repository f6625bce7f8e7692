package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/fifo"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/emptypb"
)

const (
	testNamespace   = "berth-test"
	testGRPCAddress = "/run/berth-test/berth.sock"
)

// shimBinary is the shim built once by TestMain, with buildFlags.
var (
	shimBinary string
	buildFlags []string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "berth-shim-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shimBinary = filepath.Join(dir, name)
	out, err := exec.Command("go", append(append([]string{"build"}, buildFlags...), "-o", shimBinary, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build shim: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireRunc fails (never skips) without root or runc or busybox: the
// shim cannot be tested without them, and make test installs them.
func requireRunc(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the shim tests need root")
	}
	for _, bin := range []string{"runc", "busybox"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("the shim tests need %s: %v", bin, err)
		}
	}
}

// shortTempDir is a temporary directory short enough to hold unix sockets
// named by 64-character hashes.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "bsh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// makeRootfs lays out a busybox rootfs: the static binary and a symlink
// for each applet the tests use.
func makeRootfs(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "echo", "sleep", "cat", "true", "ps"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// testSpec is a minimal OCI spec, close to `runc spec`: its own pid,
// network, ipc, uts and mount namespaces, proc, dev and sys mounts.
func testSpec(id string, args []string, terminal bool) *specs.Spec {
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_NET_BIND_SERVICE"}
	return &specs.Spec{
		Version:  specs.Version,
		Hostname: "berth-test",
		Root:     &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Terminal:        terminal,
			Args:            args,
			Env:             []string{"PATH=/bin", "TERM=xterm"},
			Cwd:             "/",
			NoNewPrivileges: true,
			Capabilities:    &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/berth-shim-test/" + id,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
			MaskedPaths:   []string{"/proc/kcore", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// task is one container under test: its bundle, the rootfs to bind, the
// runtime's binary and root, and the shim serving it.
type task struct {
	id       string
	bundle   string
	rootfs   string
	runtime  string // runc unless a test runs another runtime
	runcRoot string
	shim     taskapi.TaskService
	client   *ttrpc.Client
	address  string
	events   *eventSink
}

// newTask writes a bundle for args and starts a shim for it.
func newTask(t *testing.T, id string, args []string, terminal bool) *task {
	t.Helper()
	return newTaskSpec(t, testSpec(id, args, terminal))
}

// newTaskSpec writes a bundle with spec and starts a shim for it. The task
// id is the last element of the spec's cgroups path, as testSpec makes it.
func newTaskSpec(t *testing.T, spec *specs.Spec) *task {
	t.Helper()
	requireRunc(t)
	tmp := shortTempDir(t)
	tk := &task{
		id:       filepath.Base(spec.Linux.CgroupsPath),
		bundle:   filepath.Join(tmp, "bundle"),
		rootfs:   makeRootfs(t),
		runtime:  "runc",
		runcRoot: filepath.Join(tmp, "runc"),
		events:   newEventSink(t, filepath.Join(tmp, "daemon.sock.ttrpc")),
	}
	if err := os.MkdirAll(filepath.Join(tk.bundle, "rootfs"), 0o711); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tk.bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	tk.readShimLog(t)
	tk.startShim(t)
	return tk
}

// readShimLog reads the bundle's log FIFO, as the daemon does, and shows
// it when the test fails.
func (tk *task) readShimLog(t *testing.T) {
	t.Helper()
	r, err := fifo.OpenFifo(context.Background(), filepath.Join(tk.bundle, "log"), syscall.O_RDONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		buf bytes.Buffer
	)
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := r.Read(b)
			mu.Lock()
			buf.Write(b[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		r.Close()
		mu.Lock()
		if strings.Contains(buf.String(), "DATA RACE") {
			t.Error("the shim reported a data race")
		}
		mu.Unlock()
		if t.Failed() {
			mu.Lock()
			t.Logf("shim log:\n%s", buf.String())
			mu.Unlock()
		}
	})
}

// runShim runs the shim binary with the daemon's usual flags and
// environment in the bundle.
func (tk *task) runShim(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	full := append([]string{"-namespace", testNamespace, "-id", tk.id, "-address", testGRPCAddress}, args...)
	cmd := exec.Command(shimBinary, full...)
	cmd.Dir = tk.bundle
	// GORACE: a race-built shim otherwise sleeps a second as it exits,
	// for reports of races in that second: two thirds of this suite's time.
	cmd.Env = append(os.Environ(), "TTRPC_ADDRESS="+tk.events.address, "GORACE=atexit_sleep_ms=0")
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, stderr.String())
	}
	return out
}

// startShim runs `start` in the legacy form and connects to the address
// it prints.
func (tk *task) startShim(t *testing.T) {
	t.Helper()
	tk.address = string(tk.runShim(t, nil, "start"))
	if !strings.HasPrefix(tk.address, "unix://"+filepath.Dir(tk.events.address)+"/s/") {
		t.Fatalf("start printed %q, want a socket beside the daemon's ttrpc socket", tk.address)
	}
	conn, err := net.Dial("unix", strings.TrimPrefix(tk.address, "unix://"))
	if err != nil {
		t.Fatalf("dial shim: %v", err)
	}
	tk.client = ttrpc.NewClient(conn)
	tk.shim = taskapi.NewTaskClient(tk.client)
	t.Cleanup(func() { tk.stop(t) })
}

// stop shuts the shim down, kills it if it lingers, and cleans up what a
// failed test may have left: runc state, mounts, cgroups.
func (tk *task) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = tk.shim.Shutdown(ctx, &taskapi.ShutdownRequest{ID: tk.id, Now: true})
	tk.client.Close()
	if pid := tk.shimPid(t); pid > 0 && !waitGone(pid, 5*time.Second) {
		t.Errorf("shim %d still running after Shutdown", pid)
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	_ = exec.Command(tk.runtime, "--root", filepath.Join(tk.runcRoot, testNamespace), "delete", "--force", tk.id).Run()
	_ = unix.Unmount(filepath.Join(tk.bundle, "rootfs"), unix.MNT_DETACH)
	removeCgroups(tk.id)
}

func (tk *task) shimPid(t *testing.T) int {
	data, err := os.ReadFile(filepath.Join(tk.bundle, "shim.pid"))
	if err != nil {
		t.Errorf("shim.pid: %v", err)
		return 0
	}
	pid, _ := strconv.Atoi(string(data))
	return pid
}

// waitGone waits for pid to disappear (the shim is not our child: it was
// re-parented when `start` exited).
func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := unix.Kill(pid, 0); err == unix.ESRCH {
			return true
		}
		if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(data), ") Z ") {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// removeCgroups removes the task's cgroups if runc left them, and their
// parent once it is empty.
func removeCgroups(id string) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/berth-shim-test/" + id)
	parents, _ := filepath.Glob("/sys/fs/cgroup/*/berth-shim-test")
	for _, d := range append(dirs, parents...) {
		_ = os.Remove(d)
	}
}

// create sends Create with the busybox rootfs as a bind mount and the
// test's runc root in the runtime options.
func (tk *task) create(t *testing.T, stdout, stderr string) uint32 {
	t.Helper()
	resp, err := tk.shim.Create(context.Background(), tk.createRequest(t, stdout, stderr))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if resp.Pid == 0 {
		t.Fatal("Create returned pid 0")
	}
	return resp.Pid
}

// createRequest is what create sends.
func (tk *task) createRequest(t *testing.T, stdout, stderr string) *taskapi.CreateTaskRequest {
	t.Helper()
	opts, err := typeurl.MarshalAnyToProto(&options.Options{Root: tk.runcRoot})
	if err != nil {
		t.Fatal(err)
	}
	return &taskapi.CreateTaskRequest{
		ID:      tk.id,
		Bundle:  tk.bundle,
		Rootfs:  []*types.Mount{{Type: "bind", Source: tk.rootfs, Options: []string{"rbind", "rw"}}},
		Stdout:  stdout,
		Stderr:  stderr,
		Options: opts,
	}
}

// runcKnows reports whether runc still has state for the task.
func (tk *task) runcKnows() bool {
	err := exec.Command("runc", "--root", filepath.Join(tk.runcRoot, testNamespace), "state", tk.id).Run()
	return err == nil
}

// outputFifo makes a FIFO and reads it, as a client does, until the shim
// closes it; the result comes on the returned channel.
func outputFifo(t *testing.T, dir, name string) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(dir, name)
	r, err := fifo.OpenFifo(context.Background(), path, syscall.O_RDONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	out := make(chan string, 1)
	go func() {
		data, _ := io.ReadAll(r)
		out <- string(data)
	}()
	return path, out
}

func receive(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no output within 10s")
		return ""
	}
}

// eventSink plays the daemon's ttrpc Events service.
type eventSink struct {
	address string
	mu      sync.Mutex
	got     []*types.Envelope
	ns      []string // the namespace header of each Forward
}

func newEventSink(t *testing.T, path string) *eventSink {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	s := &eventSink{address: path}
	eventsapi.RegisterEventsService(srv, s)
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *eventSink) Forward(ctx context.Context, req *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	ns, _ := ttrpc.GetMetadataValue(ctx, "containerd-namespace-ttrpc")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, req.Envelope)
	s.ns = append(s.ns, ns)
	return &emptypb.Empty{}, nil
}

// topics returns the topics received so far.
func (s *eventSink) topics() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var topics []string
	for _, e := range s.got {
		topics = append(topics, e.Topic)
	}
	return topics
}

// waitTopics waits up to 5s for the topics received to be want, and
// returns them.
func (s *eventSink) waitTopics(want []string) []string {
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := s.topics()
		if slices.Equal(got, want) || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// event returns the first event of topic, decoded.
func (s *eventSink) event(t *testing.T, topic string) any {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !slices.Contains(s.topics(), topic) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, e := range s.got {
		if e.Topic == topic {
			if e.Namespace != testNamespace || s.ns[i] != testNamespace {
				t.Errorf("%s: namespace %q, header %q, want %q", topic, e.Namespace, s.ns[i], testNamespace)
			}
			v, err := typeurl.UnmarshalAny(e.Event)
			if err != nil {
				t.Fatalf("%s: %v", topic, err)
			}
			return v
		}
	}
	t.Fatalf("no %s event", topic)
	return nil
}
