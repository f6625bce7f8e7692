package manager

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The test binary doubles as a shim when fakeShimEnv is set: installed as
// berth-shim-runc-v2, it answers `start`, `delete` and the task calls the
// manager makes. Like berth's shim, its socket depends only on namespace
// and id, and a `start` that finds a live shim on it hands that shim back:
// a Create racing with the shutdown of the previous shim of the same id
// would get the old shim.
const (
	fakeShimEnv = "BERTH_TEST_FAKE_SHIM"
	// fakeSocketDirEnv is the directory of the fake shims' sockets.
	fakeSocketDirEnv = "BERTH_TEST_FAKE_SHIM_SOCKETS"
	// fakeStopDelay is how long a fake shim serves on after Shutdown.
	fakeStopDelay = 300 * time.Millisecond
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeShimEnv) != "" {
		if err := fakeShim(); err != nil {
			fmt.Fprintln(os.Stderr, "fake shim:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// installFakeShim makes the test binary the shim of a manager whose
// ShimDir is the returned directory.
func installFakeShim(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(self, filepath.Join(dir, ownShim)); err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeShimEnv, "1")
	// Short: a socket path has at most 107 bytes.
	sockets, err := os.MkdirTemp("", "fs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(sockets) })
	t.Setenv(fakeSocketDirEnv, sockets)
	return dir
}

func fakeShim() error {
	fs := flag.NewFlagSet("fake-shim", flag.ContinueOnError)
	ns := fs.String("namespace", "", "")
	id := fs.String("id", "", "")
	fs.String("address", "", "")
	fs.String("bundle", "", "")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	switch fs.Arg(0) {
	case "start":
		return fakeStart(filepath.Join(os.Getenv(fakeSocketDirEnv), *ns+"-"+*id))
	case "serve":
		return fakeServe(filepath.Join(os.Getenv(fakeSocketDirEnv), *ns+"-"+*id))
	case "delete":
		out, err := proto.Marshal(&taskapi.DeleteResponse{ExitStatus: 137})
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(out)
		return err
	}
	return fmt.Errorf("unknown action %q", fs.Arg(0))
}

// fakeStart hands back the shim serving path, or starts one.
func fakeStart(path string) error {
	address := "unix://" + path
	l, err := net.Listen("unix", path)
	if errors.Is(err, syscall.EADDRINUSE) {
		if conn, derr := net.Dial("unix", path); derr == nil {
			conn.Close()
			fmt.Print(address)
			return nil
		}
		_ = os.Remove(path)
		l, err = net.Listen("unix", path)
	}
	if err != nil {
		return err
	}
	f, err := l.(*net.UnixListener).File()
	if err != nil {
		return err
	}
	cmd := exec.Command(os.Args[0], append(os.Args[1:len(os.Args)-1], "serve")...)
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := os.WriteFile("address", []byte(address), 0o600); err != nil {
		return err
	}
	fmt.Print(address)
	return nil
}

func fakeServe(path string) error {
	l, err := net.FileListener(os.NewFile(3, "socket"))
	if err != nil {
		return err
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		return err
	}
	s := &fakeTasks{tasks: map[string]bool{}, stop: make(chan struct{})}
	taskapi.RegisterTaskService(srv, s)
	go func() { _ = srv.Serve(context.Background(), l) }()
	<-s.stop
	time.Sleep(fakeStopDelay)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	return os.Remove(path)
}

// fakeTasks serves the calls the manager makes; the others panic.
type fakeTasks struct {
	taskapi.TaskService
	mu       sync.Mutex
	tasks    map[string]bool
	stopOnce sync.Once
	stop     chan struct{}
}

func (s *fakeTasks) Create(_ context.Context, req *taskapi.CreateTaskRequest) (*taskapi.CreateTaskResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tasks[req.ID] = true
	return &taskapi.CreateTaskResponse{Pid: uint32(os.Getpid())}, nil
}

func (s *fakeTasks) State(_ context.Context, req *taskapi.StateRequest) (*taskapi.StateResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.tasks[req.ID] {
		return nil, status.Errorf(codes.NotFound, "task %q: not found", req.ID)
	}
	return &taskapi.StateResponse{ID: req.ID, Pid: uint32(os.Getpid())}, nil
}

func (s *fakeTasks) Delete(_ context.Context, req *taskapi.DeleteRequest) (*taskapi.DeleteResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.tasks[req.ID] {
		return nil, status.Errorf(codes.NotFound, "task %q: not found", req.ID)
	}
	delete(s.tasks, req.ID)
	return &taskapi.DeleteResponse{Pid: uint32(os.Getpid()), ExitStatus: 7}, nil
}

func (s *fakeTasks) Shutdown(context.Context, *taskapi.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tasks) == 0 {
		s.stopOnce.Do(func() { close(s.stop) })
	}
	return &emptypb.Empty{}, nil
}
