package stdio

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
)

// clientFifo opens a FIFO as the daemon's client does: created, and opened
// without waiting for the other side.
func clientFifo(t *testing.T, path string, flag int) io.ReadWriteCloser {
	t.Helper()
	f, err := fifo.OpenFifo(context.Background(), path, flag|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readAll(t *testing.T, r io.Reader) <-chan string {
	ch := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(r)
		ch <- string(b)
	}()
	return ch
}

func TestCopyPipes(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Stdin: filepath.Join(dir, "in"), Stdout: filepath.Join(dir, "out"), Stderr: "file://" + filepath.Join(dir, "logs", "err.log")}
	in := clientFifo(t, cfg.Stdin, syscall.O_WRONLY)
	out := readAll(t, clientFifo(t, cfg.Stdout, syscall.O_RDONLY))

	rio, err := NewPipes(os.Getuid(), os.Getgid(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "read x; echo got $x; echo oops >&2")
	rio.Set(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := rio.(interface{ CloseAfterStart() error }).CloseAfterStart(); err != nil {
		t.Fatal(err)
	}
	s, err := CopyPipes(rio, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if !s.Wait(5 * time.Second) {
		t.Fatal("output copies did not finish")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-out:
		if got != "got hello\n" {
			t.Errorf("stdout = %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stdout FIFO not closed")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "logs", "err.log")); err != nil || string(b) != "oops\n" {
		t.Errorf("stderr file = %q, %v", b, err)
	}
	if err := s.Resize(80, 24); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Resize without a terminal: %v", err)
	}
}

// Unconnected streams are /dev/null, so that go-runc does not capture
// them in a pipe the container would inherit.
func TestNewPipesFillsNull(t *testing.T) {
	rio, err := NewPipes(0, 0, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer rio.Close()
	cmd := exec.Command("true")
	rio.Set(cmd)
	for name, f := range map[string]any{"stdin": cmd.Stdin, "stdout": cmd.Stdout, "stderr": cmd.Stderr} {
		if file, ok := f.(*os.File); !ok || file.Name() != os.DevNull {
			t.Errorf("%s = %v, want %s", name, f, os.DevNull)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg   Config
		check func(error) bool
	}{
		{Config{Stdout: "tcp://127.0.0.1:1"}, errdefs.IsNotImplemented},
		{Config{Stdout: "file://relative/log"}, errdefs.IsInvalidArgument},
		{Config{Stderr: "binary://"}, errdefs.IsInvalidArgument},
		{Config{Stdout: "binary:///bin/a", Stderr: "binary:///bin/b"}, errdefs.IsInvalidArgument},
		{Config{Stdout: "binary:///bin/a", Terminal: true}, errdefs.IsNotImplemented},
	} {
		if err := Validate(tc.cfg); !tc.check(err) {
			t.Errorf("Validate(%+v) = %v", tc.cfg, err)
		}
		if _, err := NewPipes(0, 0, tc.cfg); !tc.check(err) {
			t.Errorf("NewPipes(%+v) = %v", tc.cfg, err)
		}
	}
	for _, cfg := range []Config{
		{Stdout: "/run/fifo", Stderr: "file:///var/log/x.log"},
		{Stdout: "binary:///bin/a?x=1", Stderr: "binary:///bin/a?x=1"},
		{Stdout: "binary:///bin/a", Stderr: "/run/fifo"},
	} {
		if err := Validate(cfg); err != nil {
			t.Errorf("Validate(%+v) = %v", cfg, err)
		}
	}
}

// Stdout and stderr naming one file:// URI share it; the file is appended
// to, its directory created.
func TestSharedLogFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "ctr.log")
	uri := "file://" + path
	cfg := Config{Stdout: uri, Stderr: uri}
	runProcess(t, cfg, "echo out; echo err >&2")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runProcess(t, cfg, "echo out; echo err >&2")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := string(data)
	if !strings.HasPrefix(got, "old\n") || strings.Count(got, "out\n") != 1 || strings.Count(got, "err\n") != 1 || len(got) != len("old\nout\nerr\n") {
		t.Errorf("log file = %q, want old, then out and err", got)
	}
}

// runProcess runs script under sh with cfg's streams, as the shim runs a
// container process, and waits for its output to be through.
func runProcess(t *testing.T, cfg Config, script string) {
	t.Helper()
	rio, err := NewPipes(os.Getuid(), os.Getgid(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", script)
	rio.Set(cmd)
	if err := cmd.Start(); err != nil {
		rio.Close()
		t.Fatal(err)
	}
	if err := rio.(interface{ CloseAfterStart() error }).CloseAfterStart(); err != nil {
		t.Fatal(err)
	}
	s, err := CopyPipes(rio, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if !s.Wait(10 * time.Second) {
		t.Error("output not through within 10s")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// loggerScript is a logging binary as containerd documents them: it records
// its arguments and environment, copies fd 3 and 4 to files, and closes
// fd 5 once ready (after a pause, and after its copies closed their own
// fd 5, or the shim would not see EOF).
const loggerScript = `#!/bin/sh
d=$2
echo "$@" > "$d/args"
env | sort > "$d/env"
cat <&3 5>&- > "$d/out" &
cat <&4 5>&- > "$d/err" &
sleep 0.3
touch "$d/ready"
exec 5>&-
wait
touch "$d/done"
`

func writeLogger(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "logger")
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// A logging binary gets the query as arguments, the container id and
// namespace in its environment, the process's stdout and stderr on fd 3
// and 4; the process starts once it is ready, and Wait waits for it to
// finish.
func TestLoggingBinary(t *testing.T) {
	dir := t.TempDir()
	uri := "binary://" + writeLogger(t, loggerScript) + "?dir=" + dir + "&verbose&env.LOG_MODE=test"
	cfg := Config{Stdout: uri, Stderr: uri, ID: "ctr1", Namespace: "k8s.io"}
	rio, err := NewPipes(os.Getuid(), os.Getgid(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ready")); err != nil {
		t.Errorf("NewPipes returned before the logger was ready: %v", err)
	}
	cmd := exec.Command("sh", "-c", "echo to-stdout; echo to-stderr >&2")
	rio.Set(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := rio.(interface{ CloseAfterStart() error }).CloseAfterStart(); err != nil {
		t.Fatal(err)
	}
	s, err := CopyPipes(rio, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if !s.Wait(10 * time.Second) {
		t.Fatal("logger did not finish after the process exited")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"out":  "to-stdout\n",
		"err":  "to-stderr\n",
		"args": "dir " + dir + " verbose\n",
		"done": "",
	} {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	env, _ := os.ReadFile(filepath.Join(dir, "env"))
	for _, want := range []string{"CONTAINER_ID=ctr1\n", "CONTAINER_NAMESPACE=k8s.io\n", "LOG_MODE=test\n"} {
		if !strings.Contains(string(env), want) {
			t.Errorf("logger environment %q lacks %q", env, want)
		}
	}
	if strings.Contains(string(env), "HOME=") {
		t.Errorf("logger environment %q has the shim's variables", env)
	}
}

// Only stderr goes to the logger: it reads EOF on fd 3 at once, and stdout
// goes to its FIFO as usual.
func TestLoggingBinaryStderrOnly(t *testing.T) {
	dir := t.TempDir()
	stdout := filepath.Join(dir, "stdout")
	out := readAll(t, clientFifo(t, stdout, syscall.O_RDONLY))
	cfg := Config{Stdout: stdout, Stderr: "binary://" + writeLogger(t, loggerScript) + "?dir=" + dir}
	runProcess(t, cfg, "echo o; echo e >&2")
	if got, _ := os.ReadFile(filepath.Join(dir, "err")); string(got) != "e\n" {
		t.Errorf("logger stderr = %q", got)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "out")); string(got) != "" {
		t.Errorf("logger stdout = %q, want nothing", got)
	}
	select {
	case got := <-out:
		if got != "o\n" {
			t.Errorf("stdout FIFO = %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stdout FIFO not closed")
	}
}

// A logger that never says it is ready fails the start, and is stopped.
func TestLoggingBinaryNotReady(t *testing.T) {
	old := LoggerReadyTimeout
	LoggerReadyTimeout = 300 * time.Millisecond
	t.Cleanup(func() { LoggerReadyTimeout = old })
	dir := t.TempDir()
	logger := writeLogger(t, "#!/bin/sh\necho $$ > \"$2/pid\"\nexec sleep 100\n")
	_, err := NewPipes(0, 0, Config{Stdout: "binary://" + logger + "?dir=" + dir})
	if !errdefs.IsUnavailable(err) {
		t.Fatalf("NewPipes = %v, want Unavailable", err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if pid <= 0 || syscall.Kill(pid, 0) == nil {
		t.Errorf("logger %d still running after the failed start", pid)
	}
}

func TestLoggingBinaryMissing(t *testing.T) {
	if _, err := NewPipes(0, 0, Config{Stdout: "binary:///nonexistent/logger"}); err == nil || !strings.Contains(err.Error(), "/nonexistent/logger") {
		t.Errorf("NewPipes with a missing logger = %v", err)
	}
}
