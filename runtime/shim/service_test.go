package shim

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/runtime/shim/runtimeopts"
	"github.com/berth-dev/berth/runtime/shim/stdio"
	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// recorder is a Publisher that keeps what it is given.
type recorder struct {
	mu     sync.Mutex
	events []string // topic + " " + process id
}

func (r *recorder) Publish(topic string, ev proto.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := ""
	if e, ok := ev.(*eventstypes.TaskExit); ok {
		id = " " + e.ID
	}
	r.events = append(r.events, topic+id)
	return nil
}

func (r *recorder) wait(t *testing.T, n int) []string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		r.mu.Lock()
		got := slices.Clone(r.events)
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
	}
	t.Fatalf("fewer than %d events", n)
	return nil
}

func testService(t *testing.T) (*Service, *recorder, chan runc.Exit) {
	exits := make(chan runc.Exit)
	rec := &recorder{}
	s := New(Config{Namespace: "ns", Publisher: rec, Exits: exits, OutputDrain: time.Millisecond})
	t.Cleanup(func() { close(exits) })
	return s, rec, exits
}

// testContainer is a container whose processes run nowhere: enough for the
// exit bookkeeping, which never calls runc for a private pid namespace.
func testContainer(s *Service) *container {
	c := &container{id: "c", execs: map[string]*process{}}
	c.init = newProcess(c, "", stdio.Config{}, nil)
	c.init.setStarted(100, nil, task.Status_RUNNING)
	s.containers["c"] = c
	s.byPid[100] = c.init
	return c
}

// The init's exit is published after the exits of execs still running
// when it exited; Wait on it returns only then.
func TestInitExitWaitsForExecs(t *testing.T) {
	s, rec, exits := testService(t)
	c := testContainer(s)
	exec := newProcess(c, "e1", stdio.Config{}, nil)
	c.execs["e1"] = exec
	s.beginStart()
	exec.setStarted(101, nil, task.Status_RUNNING)
	c.runningExecs++
	if _, exited := s.endStart(exec, 101); exited {
		t.Fatal("exec reported exited")
	}
	exits <- runc.Exit{Pid: 100, Status: 137, Timestamp: time.Now()}
	time.Sleep(50 * time.Millisecond)
	select {
	case <-c.init.done:
		t.Fatal("init's wait returned while an exec runs")
	default:
	}
	exits <- runc.Exit{Pid: 101, Status: 1, Timestamp: time.Now()}
	got := rec.wait(t, 2)
	if want := []string{"/tasks/exit e1", "/tasks/exit c"}; !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	<-c.init.done
	if _, _, status, _ := c.init.state(); status != 137 {
		t.Errorf("init exit status %d", status)
	}
}

// An exit reaped before its pid was read from the pid file is kept and
// handed over when the pid is known; others are dropped when no start is
// in progress.
func TestEarlyExit(t *testing.T) {
	s, rec, exits := testService(t)
	c := testContainer(s)
	p := newProcess(c, "fast", stdio.Config{}, nil)
	s.beginStart()
	exits <- runc.Exit{Pid: 200, Status: 5}
	exits <- runc.Exit{Pid: 300, Status: 9} // another start's runc, say
	time.Sleep(20 * time.Millisecond)
	e, exited := s.endStart(p, 200)
	if !exited || e.Status != 5 {
		t.Fatalf("endStart = %+v, %v; want the early exit", e, exited)
	}
	s.mu.Lock()
	left := len(s.early)
	s.mu.Unlock()
	if left != 0 {
		t.Errorf("%d early exits kept after the last start ended", left)
	}
	exits <- runc.Exit{Pid: 400, Status: 1} // no start in progress: ignored
	if got := rec.wait(t, 0); len(got) != 0 {
		t.Errorf("events = %v", got)
	}
}

// The runtime config kept in the bundle reads back, and so does what
// older shims kept there (containerd.runc.v1.Options as JSON).
func TestOptionsFile(t *testing.T) {
	bundle := t.TempDir()
	cfg := &runtimeopts.Config{BinaryName: "runsc", Root: "/r", IoUID: 7, GlobalFlags: []string{"--platform=ptrace"}}
	if err := writeOptions(bundle, cfg); err != nil {
		t.Fatal(err)
	}
	back, err := loadOptions(bundle)
	if err != nil || !reflect.DeepEqual(back, cfg) {
		t.Errorf("loadOptions = %+v, %v; want %+v", back, err, cfg)
	}
	r := newRunc("", "k8s.io", bundle, back)
	if r.Command != "runsc" || r.Root != "/r/k8s.io" || r.Log != filepath.Join(bundle, "log.json") || !slices.Equal(r.ExtraArgs, cfg.GlobalFlags) {
		t.Errorf("runc = %+v", r)
	}
	old, err := json.Marshal(&options.Options{BinaryName: "crun", Root: "/o", IoGid: 3, SystemdCgroup: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, optionsFile), old, 0o600); err != nil {
		t.Fatal(err)
	}
	want := &runtimeopts.Config{BinaryName: "crun", Root: "/o", IoGID: 3, SystemdCgroup: true}
	if back, err := loadOptions(bundle); err != nil || !reflect.DeepEqual(back, want) {
		t.Errorf("options.json of an older shim = %+v, %v; want %+v", back, err, want)
	}
	if back, err := loadOptions(t.TempDir()); err != nil || !reflect.DeepEqual(back, &runtimeopts.Config{}) {
		t.Errorf("no options.json = %+v, %v; want the zero config", back, err)
	}
}

func TestDecodeSpecAndRuncLog(t *testing.T) {
	var p struct{ Args []string }
	a := &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: []byte(`{"args":["sh"]}`)}
	if err := decodeSpec(a, processTypeURL, &p); err != nil || len(p.Args) != 1 {
		t.Errorf("decodeSpec = %v, %v", p, err)
	}
	if err := decodeSpec(&anypb.Any{TypeUrl: "x/Other"}, processTypeURL, &p); !errdefs.IsInvalidArgument(err) {
		t.Errorf("wrong type: %v", err)
	}
	log := filepath.Join(t.TempDir(), "log.json")
	data := `{"level":"warning","msg":"w"}` + "\n" + `{"level":"error","msg":"first"}` + "\n" + `{"level":"error","msg":"exec: \"nope\": not found"}` + "\n"
	if err := os.WriteFile(log, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := lastRuncError(log); got != `exec: "nope": not found` {
		t.Errorf("lastRuncError = %q", got)
	}
}

// runsc ends its error entry without a newline, so the next invocation's
// entries follow on the same line; its text warnings may be mixed in.
func TestLastLogErrorRunsc(t *testing.T) {
	for _, tc := range []struct{ log, want string }{
		{`{"msg":"unknown platform: bogus","level":"error","time":"2026-11-29T21:30:21Z"}`, "unknown platform: bogus"},
		{`{"msg":"a","level":"error"}{"msg":"b","level":"info"}{"msg":"c","level":"error"}`, "c"},
		{"W1129 21:30:21.908240 27968 util.go:64] FATAL ERROR: x {oops\n" + `{"msg":"d","level":"error"}` + "\n" + `{"msg":"cut off`, "d"},
		{`{"level":"fatal","msg":"e"}`, "e"},
		{"not json at all", ""},
	} {
		if got := lastLogError([]byte(tc.log)); got != tc.want {
			t.Errorf("lastLogError(%q) = %q, want %q", tc.log, got, tc.want)
		}
	}
}

// The runtime's message is added to go-runc's error once: runsc prints it
// on stderr too, which go-runc already put in the error.
func TestRuncErrorOnce(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log.json")
	if err := os.WriteFile(log, []byte(`{"msg":"unknown platform: x","level":"error"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &runc.Runc{Log: log}
	if got := runcError(errors.New("exit status 1"), r, "create").Error(); got != "create: unknown platform: x: exit status 1" {
		t.Errorf("runcError = %q", got)
	}
	if got := runcError(errors.New("exit status 128: unknown platform: x"), r, "create").Error(); got != "create: exit status 128: unknown platform: x" {
		t.Errorf("runcError with the message on stderr = %q", got)
	}
}

func FuzzLastLogError(f *testing.F) {
	f.Add([]byte(`{"msg":"a","level":"error"}{"msg":"b"`))
	f.Add([]byte("{{{\n{\"level\":\"error\"}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = lastLogError(data)
	})
}
