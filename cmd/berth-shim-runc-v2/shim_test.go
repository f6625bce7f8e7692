package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"
	cgroupstats "github.com/containerd/cgroups/v3/cgroup1/stats"
	eventstypes "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/runc/options"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/fifo"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func wait(t *testing.T, tk *task, execID string) *taskapi.WaitResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := tk.shim.Wait(ctx, &taskapi.WaitRequest{ID: tk.id, ExecID: execID})
	if err != nil {
		t.Fatalf("Wait %q: %v", execID, err)
	}
	return resp
}

func isMounted(t *testing.T, path string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

// A container's output reaches its FIFO, its exit status comes back from
// Wait and in /tasks/exit, after /tasks/create and /tasks/start; Delete
// removes the runc state and the rootfs mount.
func TestRunOutputAndExitStatus(t *testing.T) {
	tk := newTask(t, "hello", []string{"sh", "-c", "echo hello; echo oops >&2; exit 3"}, false)
	stdout, out := outputFifo(t, t.TempDir(), "stdout")
	stderr, errOut := outputFifo(t, t.TempDir(), "stderr")
	pid := tk.create(t, stdout, stderr)
	if !isMounted(t, filepath.Join(tk.bundle, "rootfs")) {
		t.Error("rootfs is not mounted after Create")
	}
	state, err := tk.shim.State(context.Background(), &taskapi.StateRequest{ID: tk.id})
	if err != nil || state.Status != tasktypes.Status_CREATED || state.Pid != pid {
		t.Fatalf("State after Create = %v, %v; want created, pid %d", state, err, pid)
	}
	if _, err := tk.shim.Start(context.Background(), &taskapi.StartRequest{ID: tk.id}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if w := wait(t, tk, ""); w.ExitStatus != 3 || w.ExitedAt == nil {
		t.Errorf("Wait = status %d at %v, want 3", w.ExitStatus, w.ExitedAt)
	}
	if got := receive(t, out); got != "hello\n" {
		t.Errorf("stdout = %q, want %q", got, "hello\n")
	}
	if got := receive(t, errOut); got != "oops\n" {
		t.Errorf("stderr = %q, want %q", got, "oops\n")
	}
	exit := tk.events.event(t, "/tasks/exit").(*eventstypes.TaskExit)
	if exit.ContainerID != tk.id || exit.ID != tk.id || exit.Pid != pid || exit.ExitStatus != 3 {
		t.Errorf("/tasks/exit = %v, want container %q pid %d status 3", exit, tk.id, pid)
	}
	resp, err := tk.shim.Delete(context.Background(), &taskapi.DeleteRequest{ID: tk.id})
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if resp.ExitStatus != 3 || resp.Pid != pid {
		t.Errorf("Delete = %v, want pid %d status 3", resp, pid)
	}
	if tk.runcKnows() {
		t.Error("runc still knows the container after Delete")
	}
	if isMounted(t, filepath.Join(tk.bundle, "rootfs")) {
		t.Error("rootfs still mounted after Delete")
	}
	want := []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"}
	if got := tk.events.waitTopics(want); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	_, err = tk.shim.State(context.Background(), &taskapi.StateRequest{ID: tk.id})
	if !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Errorf("State after Delete: %v, want NotFound", err)
	}
}

// Kill with SIGKILL ends the init process: exit status 137. Pids lists the
// init process while it runs.
func TestKill(t *testing.T) {
	tk := newTask(t, "sleeper", []string{"sleep", "100"}, false)
	pid := tk.create(t, "", "")
	if _, err := tk.shim.Start(context.Background(), &taskapi.StartRequest{ID: tk.id}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	pids, err := tk.shim.Pids(context.Background(), &taskapi.PidsRequest{ID: tk.id})
	if err != nil {
		t.Fatalf("Pids: %v", err)
	}
	if len(pids.Processes) != 1 || pids.Processes[0].Pid != pid {
		t.Errorf("Pids = %v, want only the init process %d", pids.Processes, pid)
	}
	conn, err := tk.shim.Connect(context.Background(), &taskapi.ConnectRequest{ID: tk.id})
	if err != nil || conn.TaskPid != pid || int(conn.ShimPid) != tk.shimPid(t) {
		t.Errorf("Connect = %v, %v; want task pid %d, shim pid %d", conn, err, pid, tk.shimPid(t))
	}
	if _, err := tk.shim.Kill(context.Background(), &taskapi.KillRequest{ID: tk.id, Signal: uint32(unix.SIGKILL)}); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if w := wait(t, tk, ""); w.ExitStatus != 137 {
		t.Errorf("Wait = %d, want 137", w.ExitStatus)
	}
	_, err = tk.shim.Kill(context.Background(), &taskapi.KillRequest{ID: tk.id, Signal: uint32(unix.SIGKILL)})
	if !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Errorf("Kill after exit: %v, want NotFound", err)
	}
	if _, err := tk.shim.Delete(context.Background(), &taskapi.DeleteRequest{ID: tk.id}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

func processSpec(t *testing.T, args ...string) *anypb.Any {
	t.Helper()
	data, err := json.Marshal(&specs.Process{Args: args, Env: []string{"PATH=/bin"}, Cwd: "/"})
	if err != nil {
		t.Fatal(err)
	}
	return &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: data}
}

// An exec runs in the running container, its output reaches its own FIFO
// and its exit is published before the init's.
func TestExec(t *testing.T) {
	tk := newTask(t, "execer", []string{"sleep", "100"}, false)
	tk.create(t, "", "")
	ctx := context.Background()
	if _, err := tk.shim.Start(ctx, &taskapi.StartRequest{ID: tk.id}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	stdout, out := outputFifo(t, t.TempDir(), "exec-stdout")
	if _, err := tk.shim.Exec(ctx, &taskapi.ExecProcessRequest{ID: tk.id, ExecID: "hi", Stdout: stdout, Spec: processSpec(t, "sh", "-c", "echo hi; exit 5")}); err != nil {
		t.Fatalf("Exec: %v", err)
	}
	started, err := tk.shim.Start(ctx, &taskapi.StartRequest{ID: tk.id, ExecID: "hi"})
	if err != nil {
		t.Fatalf("Start exec: %v", err)
	}
	if w := wait(t, tk, "hi"); w.ExitStatus != 5 {
		t.Errorf("Wait exec = %d, want 5", w.ExitStatus)
	}
	if got := receive(t, out); got != "hi\n" {
		t.Errorf("exec stdout = %q, want %q", got, "hi\n")
	}
	exit := tk.events.event(t, "/tasks/exit").(*eventstypes.TaskExit)
	if exit.ID != "hi" || exit.Pid != started.Pid || exit.ExitStatus != 5 {
		t.Errorf("/tasks/exit = %v, want exec hi pid %d status 5", exit, started.Pid)
	}
	if _, err := tk.shim.Delete(ctx, &taskapi.DeleteRequest{ID: tk.id, ExecID: "hi"}); err != nil {
		t.Fatalf("Delete exec: %v", err)
	}
	// SIGKILL: the init of a pid namespace ignores signals it has no
	// handler for.
	if _, err := tk.shim.Kill(ctx, &taskapi.KillRequest{ID: tk.id, Signal: uint32(unix.SIGKILL)}); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if w := wait(t, tk, ""); w.ExitStatus != 137 {
		t.Errorf("Wait init = %d, want 137", w.ExitStatus)
	}
	want := []string{"/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started", "/tasks/exit", "/tasks/exit"}
	if got := tk.events.waitTopics(want); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	if _, err := tk.shim.Delete(ctx, &taskapi.DeleteRequest{ID: tk.id}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

// Delete of a running task is refused; Pause and Resume freeze and thaw it.
func TestPauseResumeAndDeleteRunning(t *testing.T) {
	tk := newTask(t, "pauser", []string{"sleep", "100"}, false)
	tk.create(t, "", "")
	ctx := context.Background()
	if _, err := tk.shim.Start(ctx, &taskapi.StartRequest{ID: tk.id}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	_, err := tk.shim.Delete(ctx, &taskapi.DeleteRequest{ID: tk.id})
	if !errdefs.IsFailedPrecondition(errgrpc.ToNative(err)) {
		t.Errorf("Delete of a running task: %v, want FailedPrecondition", err)
	}
	if _, err := tk.shim.Pause(ctx, &taskapi.PauseRequest{ID: tk.id}); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if st, _ := tk.shim.State(ctx, &taskapi.StateRequest{ID: tk.id}); st.GetStatus() != tasktypes.Status_PAUSED {
		t.Errorf("State after Pause = %v", st.GetStatus())
	}
	if _, err := tk.shim.Resume(ctx, &taskapi.ResumeRequest{ID: tk.id}); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	checkStats(t, tk)
	if _, err := tk.shim.Kill(ctx, &taskapi.KillRequest{ID: tk.id, Signal: uint32(unix.SIGKILL)}); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	wait(t, tk, "")
	want := []string{"/tasks/create", "/tasks/start", "/tasks/paused", "/tasks/resumed", "/tasks/exit"}
	if got := tk.events.waitTopics(want); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	if _, err := tk.shim.Delete(ctx, &taskapi.DeleteRequest{ID: tk.id}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

// After the shim is killed, `delete` removes the runc container, unmounts
// the rootfs and prints a DeleteResponse with exit status 137.
func TestDeleteAfterShimDied(t *testing.T) {
	tk := newTask(t, "orphan", []string{"sleep", "100"}, false)
	pid := tk.create(t, "", "")
	if _, err := tk.shim.Start(context.Background(), &taskapi.StartRequest{ID: tk.id}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	shimPid := tk.shimPid(t)
	if err := unix.Kill(shimPid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !waitGone(shimPid, 5*time.Second) {
		t.Fatal("shim survived SIGKILL")
	}
	out := tk.runShim(t, nil, "-bundle", tk.bundle, "delete")
	var resp taskapi.DeleteResponse
	if err := proto.Unmarshal(out, &resp); err != nil {
		t.Fatalf("delete printed %q: %v", out, err)
	}
	if resp.Pid != pid || resp.ExitStatus != 137 {
		t.Errorf("delete = %v, want pid %d status 137", &resp, pid)
	}
	if tk.runcKnows() {
		t.Error("runc still knows the container after delete")
	}
	if isMounted(t, filepath.Join(tk.bundle, "rootfs")) {
		t.Error("rootfs still mounted after delete")
	}
	if !waitGone(int(pid), 5*time.Second) {
		t.Errorf("container process %d survived delete", pid)
	}
	if _, err := os.Stat(strings.TrimPrefix(tk.address, "unix://")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket of the dead shim: %v, want removed", err)
	}
}

// A second start for the same task finds the running shim instead of
// starting another; Shutdown ends it and removes its socket.
func TestStartFindsRunningShimAndShutdown(t *testing.T) {
	tk := newTask(t, "twice", []string{"true"}, false)
	first := tk.shimPid(t)
	if again := string(tk.runShim(t, nil, "start")); again != tk.address {
		t.Errorf("second start printed %q, want %q", again, tk.address)
	}
	if tk.shimPid(t) != first {
		t.Errorf("second start launched a new shim")
	}
	if _, err := tk.shim.Shutdown(context.Background(), &taskapi.ShutdownRequest{ID: tk.id}); err != nil && !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Shutdown: %v", err)
	}
	if !waitGone(first, 5*time.Second) {
		t.Fatal("shim still running after Shutdown")
	}
	if _, err := os.Stat(strings.TrimPrefix(tk.address, "unix://")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after Shutdown: %v, want removed", err)
	}
}

// checkStats asks for the task's metrics: cgroup v1 metrics on a v1 host,
// NotImplemented on a v2 one.
func checkStats(t *testing.T, tk *task) {
	t.Helper()
	resp, err := tk.shim.Stats(context.Background(), &taskapi.StatsRequest{ID: tk.id})
	if cgroups.Mode() == cgroups.Unified {
		if !errdefs.IsNotImplemented(errgrpc.ToNative(err)) {
			t.Errorf("Stats on cgroup v2: %v, want NotImplemented", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	v, err := typeurl.UnmarshalAny(resp.Stats)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	m, ok := v.(*cgroupstats.Metrics)
	if !ok || m.GetPids().GetCurrent() != 1 || m.GetMemory().GetUsage().GetUsage() == 0 {
		t.Errorf("Stats = %T %v, want one pid and some memory", v, v)
	}
}

// The pty of a task with a terminal reaches its stdout FIFO.
func TestTerminal(t *testing.T) {
	tk := newTask(t, "tty", []string{"sh", "-c", "tty; echo term"}, true)
	stdout, out := outputFifo(t, t.TempDir(), "stdout")
	opts, err := typeurl.MarshalAnyToProto(&options.Options{Root: tk.runcRoot})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = tk.shim.Create(ctx, &taskapi.CreateTaskRequest{
		ID: tk.id, Bundle: tk.bundle, Terminal: true, Stdout: stdout, Options: opts,
		Rootfs: []*types.Mount{{Type: "bind", Source: tk.rootfs, Options: []string{"rbind", "rw"}}},
	})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := tk.shim.ResizePty(ctx, &taskapi.ResizePtyRequest{ID: tk.id, Width: 100, Height: 30}); err != nil {
		t.Errorf("ResizePty: %v", err)
	}
	if _, err := tk.shim.Start(ctx, &taskapi.StartRequest{ID: tk.id}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if w := wait(t, tk, ""); w.ExitStatus != 0 {
		t.Errorf("Wait = %d", w.ExitStatus)
	}
	if got := receive(t, out); got != "/dev/pts/0\r\nterm\r\n" {
		t.Errorf("terminal output = %q", got)
	}
	if _, err := tk.shim.Delete(ctx, &taskapi.DeleteRequest{ID: tk.id}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

// containerd 2.3's form of start: BootstrapParams on stdin, a
// BootstrapResult on stdout, here for the shim already running; the socket
// also serves task API v3.
func TestStartBootstrapParams(t *testing.T) {
	requireRunc(t)
	tk := newTask(t, "boot", []string{"true"}, false)
	var params []byte
	params = protowire.AppendTag(params, 1, protowire.BytesType)
	params = protowire.AppendString(params, tk.id)
	params = protowire.AppendTag(params, 2, protowire.BytesType)
	params = protowire.AppendString(params, testNamespace)
	params = protowire.AppendTag(params, 5, protowire.BytesType)
	params = protowire.AppendString(params, tk.events.address)
	params = protowire.AppendTag(params, 6, protowire.BytesType)
	params = protowire.AppendString(params, testGRPCAddress)
	out := tk.runShim(t, params, "start")
	fields := map[protowire.Number][]byte{}
	for b := out; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("start printed %q: not a BootstrapResult", out)
		}
		b = b[n:]
		n = protowire.ConsumeFieldValue(num, typ, b)
		fields[num] = b[:n]
		b = b[n:]
	}
	version, _ := protowire.ConsumeVarint(fields[1])
	address, _ := protowire.ConsumeBytes(fields[2])
	protocol, _ := protowire.ConsumeBytes(fields[3])
	if version != 3 || string(address) != tk.address || string(protocol) != "ttrpc" {
		t.Errorf("BootstrapResult = version %d, address %q, protocol %q; want 3, %q, ttrpc", version, address, protocol, tk.address)
	}
	v3 := taskv3.NewTTRPCTaskClient(tk.client)
	conn, err := v3.Connect(context.Background(), &taskv3.ConnectRequest{ID: tk.id})
	if err != nil || int(conn.ShimPid) != tk.shimPid(t) {
		t.Errorf("v3 Connect = %v, %v; want shim pid %d", conn, err, tk.shimPid(t))
	}
	_, err = v3.State(context.Background(), &taskv3.StateRequest{ID: "nope"})
	if !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Errorf("v3 State of an unknown task: %v, want NotFound", err)
	}
}

// Stdin reaches the process through its FIFO; CloseIO gives it EOF.
func TestStdinAndCloseIO(t *testing.T) {
	tk := newTask(t, "cat", []string{"cat"}, false)
	dir := t.TempDir()
	stdin := filepath.Join(dir, "stdin")
	in, err := fifo.OpenFifo(context.Background(), stdin, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	stdout, out := outputFifo(t, dir, "stdout")
	opts, err := typeurl.MarshalAnyToProto(&options.Options{Root: tk.runcRoot})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = tk.shim.Create(ctx, &taskapi.CreateTaskRequest{
		ID: tk.id, Bundle: tk.bundle, Stdin: stdin, Stdout: stdout, Options: opts,
		Rootfs: []*types.Mount{{Type: "bind", Source: tk.rootfs, Options: []string{"rbind", "rw"}}},
	})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := tk.shim.Start(ctx, &taskapi.StartRequest{ID: tk.id}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if _, err := in.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the shim copy it before the close
	if _, err := tk.shim.CloseIO(ctx, &taskapi.CloseIORequest{ID: tk.id, Stdin: true}); err != nil {
		t.Fatalf("CloseIO: %v", err)
	}
	if w := wait(t, tk, ""); w.ExitStatus != 0 {
		t.Errorf("Wait = %d, want 0", w.ExitStatus)
	}
	if got := receive(t, out); got != "ping\n" {
		t.Errorf("stdout = %q, want %q", got, "ping\n")
	}
	if _, err := tk.shim.Delete(ctx, &taskapi.DeleteRequest{ID: tk.id}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

// A task deleted before it started is killed and removed; no exit is
// published for a process that never ran.
func TestDeleteCreated(t *testing.T) {
	tk := newTask(t, "never", []string{"sleep", "100"}, false)
	pid := tk.create(t, "", "")
	resp, err := tk.shim.Delete(context.Background(), &taskapi.DeleteRequest{ID: tk.id})
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if resp.Pid != pid || resp.ExitStatus != 137 {
		t.Errorf("Delete = %v, want pid %d status 137", resp, pid)
	}
	if tk.runcKnows() {
		t.Error("runc still knows the container")
	}
	if !waitGone(int(pid), 5*time.Second) {
		t.Errorf("process %d survived", pid)
	}
	want := []string{"/tasks/create", "/tasks/delete"}
	time.Sleep(100 * time.Millisecond)
	if got := tk.events.waitTopics(want); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}
