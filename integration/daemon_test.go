package integration

import (
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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// Timeouts of the helpers.
const (
	startTimeout = 10 * time.Second
	// stopTimeout is how long berthd may take to exit after SIGTERM.
	stopTimeout = 5 * time.Second
	ctrTimeout  = 30 * time.Second
)

// daemon is one berthd under test. Its root, state and log live in a
// t.TempDir(); its socket in a short directory of its own, because a unix
// socket path is limited to 107 bytes and test names are long.
type daemon struct {
	t       *testing.T
	Root    string
	State   string
	Address string
	Config  string // a missing file means defaults
	logPath string
	proc    *process
	conn    *grpc.ClientConn
	// gcBroken: start does not wait for the start-up collection.
	gcBroken bool
}

// process is one run of berthd.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // valid once exited is closed
	// started is when it started, as logged after startMarker.
	started string
}

// startMarker starts the line the log gets before each run of berthd.
const startMarker = "=== berthd started at "

type daemonOpt func(t *testing.T, d *daemon)

// withConfig writes toml as the daemon's config file.
func withConfig(toml string) daemonOpt {
	return func(t *testing.T, d *daemon) {
		if err := os.WriteFile(d.Config, []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// withBrokenGC tells start not to wait for the start-up collection, for a
// config that breaks the gc plugin.
func withBrokenGC(t *testing.T, d *daemon) { d.gcBroken = true }

// newDaemon prepares a daemon without starting it. At cleanup a running
// daemon is stopped with SIGTERM and must exit 0; on failure its log is
// dumped.
func newDaemon(t *testing.T, opts ...daemonOpt) *daemon {
	t.Helper()
	requirements(t)
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "berth-it-")
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{
		t:       t,
		Root:    filepath.Join(dir, "root"),
		State:   filepath.Join(dir, "state"),
		Address: filepath.Join(sockDir, "run", "berthd.sock"),
		Config:  filepath.Join(dir, "config.toml"),
		logPath: filepath.Join(dir, "berthd.log"),
	}
	t.Cleanup(func() {
		if d.conn != nil {
			d.conn.Close()
		}
		d.stop()
		if t.Failed() || os.Getenv("BERTH_IT_LOG") != "" {
			t.Logf("berthd log:\n%s", d.log())
		}
		os.RemoveAll(sockDir)
	})
	for _, o := range opts {
		o(t, d)
	}
	return d
}

// startDaemon starts a new daemon and waits until it serves.
func startDaemon(t *testing.T, opts ...daemonOpt) *daemon {
	t.Helper()
	d := newDaemon(t, opts...)
	d.start()
	return d
}

func (d *daemon) args() []string {
	return []string{"--root", d.Root, "--state", d.State, "--address", d.Address, "--config", d.Config, "--log-level", "debug"}
}

// spawn starts berthd with extra arguments appended, its output appended
// to the log.
func (d *daemon) spawn(extra ...string) *process {
	d.t.Helper()
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		d.t.Fatal(err)
	}
	defer logf.Close()
	started := time.Now().Format(time.RFC3339Nano)
	fmt.Fprintf(logf, "%s%s\n", startMarker, started)
	cmd := exec.Command(berthdPath, append(d.args(), extra...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("start berthd: %v", err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{}), started: started}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	return p
}

// start starts berthd and waits until its socket accepts connections and
// its start-up garbage collection is done. Content ingested by ctr is no
// GC root (as in containerd, only images, leases and gc.root labels are),
// so a test that ingests before that collection would race with it.
func (d *daemon) start() {
	d.t.Helper()
	d.startServing()
	if d.gcBroken {
		return
	}
	eventually(d.t, startTimeout, func() error {
		_, run, _ := strings.Cut(d.log(), startMarker+d.proc.started)
		if !strings.Contains(run, "garbage collection done") {
			return fmt.Errorf("berthd logged no start-up garbage collection")
		}
		return nil
	})
}

// startServing starts berthd and waits until its socket accepts connections.
func (d *daemon) startServing() {
	d.t.Helper()
	if d.proc != nil {
		d.t.Fatal("berthd is already running")
	}
	p := d.spawn()
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-p.exited:
			d.t.Fatalf("berthd exited during start-up (%v); log:\n%s", p.err, d.log())
		default:
		}
		if c, err := net.DialTimeout("unix", d.Address, 100*time.Millisecond); err == nil {
			c.Close()
			d.proc = p
			return
		}
		if time.Now().After(deadline) {
			_ = p.cmd.Process.Kill()
			<-p.exited
			d.t.Fatalf("berthd did not serve %s within %s; log:\n%s", d.Address, startTimeout, d.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and checks that berthd exits 0 within stopTimeout;
// it returns how long berthd took.
func (d *daemon) stop() time.Duration {
	d.t.Helper()
	return d.stopWithin(stopTimeout)
}

// stopWithin is stop with another timeout.
func (d *daemon) stopWithin(timeout time.Duration) time.Duration {
	d.t.Helper()
	p := d.proc
	if p == nil {
		return 0
	}
	d.proc = nil
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		d.t.Errorf("SIGTERM berthd: %v", err)
	}
	select {
	case <-p.exited:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		d.t.Errorf("berthd did not exit within %s of SIGTERM", timeout)
		return time.Since(start)
	}
	if p.err != nil {
		d.t.Errorf("berthd after SIGTERM: %v, want exit status 0", p.err)
	}
	return time.Since(start)
}

// kill SIGKILLs berthd, as a crash would.
func (d *daemon) kill() {
	d.t.Helper()
	p := d.proc
	if p == nil {
		d.t.Fatal("berthd is not running")
	}
	d.proc = nil
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// pid is the running berthd's process id.
func (d *daemon) pid() int { return d.proc.cmd.Process.Pid }

func (d *daemon) log() string {
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}

// runBerthd runs another berthd with the daemon's arguments (and extra)
// until it exits, for start-up failures; it returns its output and exit
// code.
func (d *daemon) runBerthd(extra ...string) (string, int) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, berthdPath, append(d.args(), extra...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case ctx.Err() != nil:
		d.t.Fatalf("berthd still running after %s, want it to exit; output:\n%s", startTimeout, out)
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	d.t.Fatalf("run berthd: %v", err)
	return "", 0
}

// result is one ctr run.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// ctr runs `ctr -a SOCKET args...`.
func (d *daemon) ctr(args ...string) result {
	d.t.Helper()
	return d.ctrIn(nil, args...)
}

// ctrIn runs ctr with stdin.
func (d *daemon) ctrIn(stdin io.Reader, args ...string) result {
	d.t.Helper()
	requirements(d.t)
	return runCmd(d.t, "ctr "+strings.Join(args, " "), ctrTimeout, stdin, func(ctx context.Context) *exec.Cmd {
		return exec.CommandContext(ctx, ctrPath, append([]string{"-a", d.Address}, args...)...)
	})
}

// runCmd runs the command mk builds, with stdin, for at most timeout, and
// returns its output and exit code; a timeout or a failure to start it
// fails the test, naming it by label.
func runCmd(t *testing.T, label string, timeout time.Duration, stdin io.Reader, mk func(ctx context.Context) *exec.Cmd) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := mk(ctx)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		t.Fatalf("%s: timed out after %s", label, timeout)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("%s: %v", label, err)
	}
	return r
}

// mustCtr runs ctr and fails the test unless it exits 0; it returns stdout.
func (d *daemon) mustCtr(args ...string) string {
	d.t.Helper()
	r := d.ctr(args...)
	if r.code != 0 {
		d.t.Fatalf("ctr %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// mustCtrIn runs ctr with stdin and fails the test unless it exits 0.
func (d *daemon) mustCtrIn(stdin io.Reader, args ...string) string {
	d.t.Helper()
	r := d.ctrIn(stdin, args...)
	if r.code != 0 {
		d.t.Fatalf("ctr %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// ctrFails runs ctr, fails the test unless it exits non-zero, and returns
// its stderr.
func (d *daemon) ctrFails(args ...string) string {
	d.t.Helper()
	r := d.ctr(args...)
	if r.code == 0 {
		d.t.Fatalf("ctr %s succeeded, want an error: %s", strings.Join(args, " "), r)
	}
	return r.stderr
}

// background is a ctr running while the test goes on.
type background struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	exited         chan struct{}
	err            error
}

// ctrBackground starts ctr; it is killed at cleanup if still running.
func (d *daemon) ctrBackground(stdin io.Reader, args ...string) *background {
	d.t.Helper()
	requirements(d.t)
	b := &background{stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	b.cmd = exec.Command(ctrPath, append([]string{"-a", d.Address}, args...)...)
	b.cmd.Stdin, b.cmd.Stdout, b.cmd.Stderr = stdin, b.stdout, b.stderr
	if err := b.cmd.Start(); err != nil {
		d.t.Fatalf("start ctr %s: %v", strings.Join(args, " "), err)
	}
	go func() { b.err = b.cmd.Wait(); close(b.exited) }()
	d.t.Cleanup(b.stop)
	return b
}

// stop kills the ctr and waits for it.
func (b *background) stop() {
	select {
	case <-b.exited:
	default:
		_ = b.cmd.Process.Kill()
		<-b.exited
	}
}

// wait waits up to timeout for the ctr to exit by itself.
func (b *background) wait(timeout time.Duration) bool {
	select {
	case <-b.exited:
		return true
	case <-time.After(timeout):
		return false
	}
}

// syncBuffer is a bytes.Buffer safe to read while a process writes it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// client returns a gRPC connection to the daemon, for what ctr 1.6 cannot
// do; it survives restarts of the daemon.
func (d *daemon) client() *grpc.ClientConn {
	d.t.Helper()
	if d.conn == nil {
		c, err := grpc.NewClient("unix://"+d.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			d.t.Fatalf("grpc client: %v", err)
		}
		d.conn = c
	}
	return d.conn
}

// nsContext returns a request context for namespace ns, with a lease when
// lease is not "".
func nsContext(t *testing.T, ns, lease string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), ctrTimeout)
	t.Cleanup(cancel)
	ctx = metadata.AppendToOutgoingContext(ctx, "containerd-namespace", ns)
	if lease != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "containerd-lease", lease)
	}
	return ctx
}

// blobPath is where the content store keeps blob dgst ("sha256:...").
func (d *daemon) blobPath(dgst string) string {
	alg, hex, _ := strings.Cut(dgst, ":")
	return filepath.Join(d.Root, "io.containerd.content.v1.content", "blobs", alg, hex)
}

// blobFiles lists the files under the content store's blobs/ directory.
func (d *daemon) blobFiles() []string {
	d.t.Helper()
	var files []string
	dir := filepath.Join(d.Root, "io.containerd.content.v1.content", "blobs")
	err := filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		d.t.Fatal(err)
	}
	return files
}

// digestOf is the sha256 digest of b, as ctr prints it.
func digestOf(b []byte) string { return digest.FromBytes(b).String() }

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// eventually polls cond every 50ms until it returns nil or timeout passes,
// then fails the test with cond's last error.
func eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// gcTimeout bounds the wait for the scheduler's collection after a delete
// (default schedule_delay 0ms).
const gcTimeout = 5 * time.Second

// waitBlobGone waits until blob dgst is removed from disk.
func (d *daemon) waitBlobGone(dgst string) {
	d.t.Helper()
	eventually(d.t, gcTimeout, func() error {
		if exists(d.blobPath(dgst)) {
			return fmt.Errorf("blob %s is still on disk, want it collected", dgst)
		}
		return nil
	})
}

// collectGarbage runs a collection and returns once it is done: deleting
// a lease with --sync collects synchronously.
func (d *daemon) collectGarbage() {
	d.t.Helper()
	d.mustCtr("leases", "create", "--id", "gc-trigger")
	d.mustCtr("leases", "rm", "--sync", "gc-trigger")
}
