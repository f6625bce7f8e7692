package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestCLIAgainstDaemon runs the built berth binary against the daemon at
// $BERTH_TEST_ADDRESS or, when that is unset, against a containerd 1.6 it
// starts on a temporary root. Everything it creates lives in namespaces of
// its own, so a shared daemon is left as it was found.
func TestCLIAgainstDaemon(t *testing.T) {
	c := cli{t: t, bin: buildCLI(t), address: os.Getenv("BERTH_TEST_ADDRESS")}
	if c.address == "" {
		c.address = startContainerd(t)
	}
	suffix := randomHex(t, 4)
	ns := "berth-test-" + suffix

	t.Run("version", func(t *testing.T) { testVersion(t, c) })
	t.Run("info", func(t *testing.T) { testInfo(t, c) })
	t.Run("plugins", func(t *testing.T) { testPlugins(t, c) })
	t.Run("namespaces", func(t *testing.T) { testNamespaces(t, c, "berth-test-ns-"+suffix) })
	t.Run("events", func(t *testing.T) { testEvents(t, c, "berth-test-ev-"+suffix) })
	t.Run("content", func(t *testing.T) { testContent(t, c, ns) })
	t.Run("images", func(t *testing.T) { testImages(t, c, ns) })
	t.Run("unreachable", func(t *testing.T) { testUnreachable(t, c) })
	c.run(nil, "ns", "rm", ns) // best effort: it exists if content or images created it
}

func testVersion(t *testing.T, c cli) {
	if out := c.ok(nil, "version"); !strings.Contains(out, "Client:") || !strings.Contains(out, "Server:") {
		t.Errorf("version output:\n%s", out)
	}
	var v versionView
	c.okJSON(&v, "version", "--format", "json")
	if v.Server == nil || v.Server.Version == "" || v.Server.UUID == "" {
		t.Errorf("version json lacks server version or uuid: %+v", v)
	}
}

func testInfo(t *testing.T, c cli) {
	out := c.ok(nil, "info")
	for _, want := range []string{"UUID:", "Root:", "Address:", "Plugins:"} {
		if !strings.Contains(out, want) {
			t.Errorf("info lacks %q:\n%s", want, out)
		}
	}
	var info infoView
	c.okJSON(&info, "info", "--format", "json")
	if info.Server.UUID == "" || len(info.Plugins) == 0 {
		t.Errorf("info json: %+v", info)
	}
}

func testPlugins(t *testing.T, c cli) {
	if !hasRow(c.ok(nil, "plugins", "ls"), "content", "ok") {
		t.Error("plugins ls has no loaded content plugin")
	}
	var plugins []pluginView
	c.okJSON(&plugins, "plugins", "ls", "--format", "json", "id==content")
	if len(plugins) == 0 {
		t.Fatal("no plugin with id content")
	}
	for _, p := range plugins {
		if p.ID != "content" {
			t.Errorf("filter id==content returned %s %s", p.Type, p.ID)
		}
	}
}

func testNamespaces(t *testing.T, c cli, ns string) {
	c.ok(nil, "namespace", "create", ns, "--label", "a=b")
	if !hasRow(c.ok(nil, "ns", "ls"), ns, "a=b") {
		t.Errorf("ns ls lacks %s a=b", ns)
	}
	c.ok(nil, "ns", "label", ns, "c=d", "a=")
	var list []namespaceView
	c.okJSON(&list, "namespaces", "ls", "--format", "json")
	if v, ok := find(list, func(v namespaceView) bool { return v.Name == ns }); !ok ||
		len(v.Labels) != 1 || v.Labels["c"] != "d" {
		t.Errorf("after label, %s in ls json: %+v (found %v)", ns, v, ok)
	}
	if out := c.ok(nil, "ns", "rm", ns); out != ns+"\n" {
		t.Errorf("ns rm printed %q", out)
	}
	if strings.Contains(c.ok(nil, "ns", "ls", "-q"), ns+"\n") {
		t.Errorf("%s still listed after rm", ns)
	}
	if errOut := c.fail(nil, "ns", "rm", ns); !strings.Contains(errOut, "not found") {
		t.Errorf("rm of a missing namespace said %q", errOut)
	}
}

// testEvents creates namespaces while watching for their events; it creates
// one after another until one is seen, since a subscription cannot tell
// when it has started.
func testEvents(t *testing.T, c cli, prefix string) {
	watch := c.start("events", "--format", "json", "--filter", `topic=="/namespaces/create"`)
	defer watch.stop()
	var created []string
	defer func() { c.run(nil, append([]string{"ns", "rm"}, created...)...) }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		name := fmt.Sprintf("%s-%d", prefix, len(created))
		c.ok(nil, "ns", "create", name)
		created = append(created, name)
		select {
		case line := <-watch.lines:
			var ev eventView
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("event line %q: %v", line, err)
			}
			var payload struct{ Name string }
			if err := json.Unmarshal(ev.Event, &payload); err != nil || ev.Topic != "/namespaces/create" ||
				!strings.HasPrefix(payload.Name, prefix) || ev.Timestamp.IsZero() {
				t.Errorf("event %+v (payload %s, %v)", ev, ev.Event, err)
			}
			return
		case <-time.After(300 * time.Millisecond):
		}
	}
	t.Fatalf("no /namespaces/create event in 15s; events stderr: %s", watch.stderr.String())
}

func testContent(t *testing.T, c cli, ns string) {
	blob := randomBytes(t, 3<<20+17) // several WRITE messages
	dgst := c.ingest(ns, "berth-test-blob", blob)
	if !hasRow(c.ok(nil, "-n", ns, "content", "ls"), dgst) {
		t.Errorf("content ls lacks %s", dgst)
	}
	if got := c.ok(nil, "-n", ns, "content", "get", dgst); got != string(blob) {
		t.Errorf("content get returned %d bytes, want the %d ingested", len(got), len(blob))
	}
	c.ok(nil, "-n", ns, "content", "label", dgst, "berth.test=yes")
	var list []contentView
	c.okJSON(&list, "-n", ns, "content", "ls", "--format", "json")
	if v, ok := find(list, func(v contentView) bool { return v.Digest == dgst }); !ok ||
		v.Size != int64(len(blob)) || v.Labels["berth.test"] != "yes" {
		t.Errorf("content ls json entry for %s: %+v (found %v)", dgst, v, ok)
	}

	resumed := testResumeIngest(t, c, ns)

	if out := c.ok(nil, "-n", ns, "content", "rm", dgst, resumed); out != dgst+"\n"+resumed+"\n" {
		t.Errorf("content rm printed %q", out)
	}
	if errOut := c.fail(nil, "-n", ns, "content", "get", dgst); !strings.Contains(errOut, "not found") {
		t.Errorf("get after rm said %q", errOut)
	}
}

// testResumeIngest breaks off an ingest fed through a pipe, sees it in
// content active, and finishes it from a file. It returns the blob's digest.
func testResumeIngest(t *testing.T, c cli, ns string) string {
	const ref = "berth-test-resume"
	blob := randomBytes(t, 200_000)
	partial := c.start("-n", ns, "content", "ingest", ref)
	if _, err := partial.stdin.Write(blob[:50_000]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !c.activeAt(ns, ref, 50_000) {
		if time.Now().After(deadline) {
			t.Fatalf("ingest %s never reached offset 50000: %s", ref, c.ok(nil, "-n", ns, "content", "active"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	partial.stop() // SIGKILL: the daemon keeps the ingest
	if !hasRow(c.ok(nil, "-n", ns, "content", "active"), ref, "50000") {
		t.Errorf("content active lacks %s at 50000", ref)
	}

	stdout, stderr, code := c.runFile(blob, "-n", ns, "content", "ingest", ref,
		"--label", "containerd.io/gc.root=berth-test")
	if code != 0 || !strings.Contains(stderr, "resuming ingest") {
		t.Fatalf("resumed ingest: exit %d, stderr %q", code, stderr)
	}
	if want := sha256Digest(blob); strings.TrimSpace(stdout) != want {
		t.Errorf("resumed ingest gave %q, want %s", stdout, want)
	}
	if c.activeAt(ns, ref, -1) {
		t.Errorf("ingest %s still active after commit", ref)
	}
	return sha256Digest(blob)
}

func testImages(t *testing.T, c cli, ns string) {
	if out := c.ok(nil, "-n", ns, "images", "ls"); strings.TrimSpace(out) != "NAME   TYPE   DIGEST   SIZE   PLATFORMS   AGE   LABELS" {
		t.Errorf("images ls of an empty namespace:\n%s", out)
	}
	var list []imageView
	c.okJSON(&list, "-n", ns, "i", "ls", "--format", "json")
	if len(list) != 0 {
		t.Errorf("images in a new namespace: %+v", list)
	}
	errOut := c.fail(nil, "-n", ns, "image", "rm", "example.com/missing:1")
	if !strings.HasPrefix(errOut, "berth: ") || !strings.Contains(errOut, "example.com/missing:1") ||
		!strings.Contains(errOut, "not found") {
		t.Errorf("rm of a missing image said %q", errOut)
	}
}

func testUnreachable(t *testing.T, c cli) {
	c.address = filepath.Join(t.TempDir(), "nobody.sock")
	errOut := c.fail(nil, "ns", "ls")
	if want := "berth: cannot connect to berthd at " + c.address; !strings.HasPrefix(errOut, want) {
		t.Errorf("unreachable daemon: %q, want prefix %q", errOut, want)
	}
}

// cli runs the built berth binary against one daemon.
type cli struct {
	t       *testing.T
	bin     string
	address string
}

func (c cli) command(args ...string) *exec.Cmd {
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(os.Environ(), "BERTH_ADDRESS="+c.address, "BERTH_NAMESPACE=default")
	return cmd
}

func (c cli) run(stdin io.Reader, args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	cmd := c.command(args...)
	cmd.Stdin = stdin
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		c.t.Fatalf("berth %q: %v", args, err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// runFile runs berth with stdin redirected from a file holding data.
func (c cli) runFile(data []byte, args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	path := filepath.Join(c.t.TempDir(), "stdin")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		c.t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	return c.run(f, args...)
}

func (c cli) ok(stdin io.Reader, args ...string) string {
	c.t.Helper()
	stdout, stderr, code := c.run(stdin, args...)
	if code != 0 {
		c.t.Fatalf("berth %q: exit %d: %s", args, code, stderr)
	}
	return stdout
}

func (c cli) okJSON(v any, args ...string) {
	c.t.Helper()
	out := c.ok(nil, args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("berth %q printed invalid JSON (%v):\n%s", args, err, out)
	}
}

// fail runs a command that must fail with exit code 1, returning its stderr.
func (c cli) fail(stdin io.Reader, args ...string) string {
	c.t.Helper()
	_, stderr, code := c.run(stdin, args...)
	if code != 1 {
		c.t.Errorf("berth %q: exit %d, want 1", args, code)
	}
	return stderr
}

func (c cli) ingest(ns, ref string, data []byte) string {
	c.t.Helper()
	// The gc.root label keeps the garbage collector off a blob no image uses.
	stdout, stderr, code := c.runFile(data, "-n", ns, "content", "ingest", ref,
		"--label", "containerd.io/gc.root=berth-test", "--expected-size", fmt.Sprint(len(data)))
	if want := sha256Digest(data); code != 0 || strings.TrimSpace(stdout) != want {
		c.t.Fatalf("ingest %s: exit %d, printed %q, want %s; stderr %s", ref, code, stdout, want, stderr)
	}
	return strings.TrimSpace(stdout)
}

// activeAt reports whether ref is an active ingest at offset (any, for -1).
func (c cli) activeAt(ns, ref string, offset int64) bool {
	c.t.Helper()
	var active []activeView
	c.okJSON(&active, "-n", ns, "content", "active", "--format", "json")
	v, ok := find(active, func(v activeView) bool { return v.Ref == ref })
	return ok && (offset < 0 || v.Offset == offset)
}

// process is a berth command left running: its stdout lines arrive on lines.
type process struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *bytes.Buffer
}

func (c cli) start(args ...string) *process {
	c.t.Helper()
	p := &process{cmd: c.command(args...), lines: make(chan string, 100), stderr: &bytes.Buffer{}}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		c.t.Fatal(err)
	}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			p.lines <- s.Text()
		}
		close(p.lines)
	}()
	c.t.Cleanup(p.stop)
	return p
}

// stop kills the process by its PID and reaps it; calling it again is a no-op.
func (p *process) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Kill()
	p.stdin.Close()
	p.cmd.Wait()
}

func buildCLI(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build berth: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "berth")
	out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startContainerd runs Debian's containerd on a temporary root until the
// test ends, and returns its socket.
func startContainerd(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("containerd")
	if err != nil {
		t.Fatalf("containerd is not installed (%v): install Debian's containerd package "+
			"(apt-get install containerd), or set BERTH_TEST_ADDRESS to a running berthd", err)
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "config.toml")
	// No CRI: it is slow to start and reaches out to CNI; opt would write to /opt.
	conf := fmt.Sprintf("version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"+
		"[plugins.\"io.containerd.internal.v1.opt\"]\n  path = %q\n", filepath.Join(dir, "opt"))
	if err := os.WriteFile(config, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "containerd.sock")
	log, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", config, "--root", filepath.Join(dir, "root"),
		"--state", filepath.Join(dir, "state"), "--address", sock)
	cmd.Stdout, cmd.Stderr = log, log
	// Die with the test binary even if it is killed before cleanups run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); log.Close(); close(exited) }()
	t.Cleanup(func() { stopProcess(t, cmd.Process, exited) })
	waitForSocket(t, sock, exited, filepath.Join(dir, "containerd.log"))
	return sock
}

// stopProcess asks the process to stop, then kills it after a grace period.
func stopProcess(t *testing.T, p *os.Process, exited <-chan struct{}) {
	p.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Logf("daemon (pid %d) ignored SIGTERM; killing it", p.Pid)
		p.Kill()
		<-exited
	}
}

func waitForSocket(t *testing.T, sock string, exited <-chan struct{}, logPath string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if nc, err := net.Dial("unix", sock); err == nil {
			nc.Close()
			return
		}
		select {
		case <-exited:
			logs, _ := os.ReadFile(logPath)
			t.Fatalf("the daemon exited before serving:\n%s", logs)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not serve %s within 20s", sock)
		}
	}
}

// hasRow reports whether a table has a row containing all cells, in order.
func hasRow(table string, cells ...string) bool {
	for line := range strings.Lines(table) {
		fields := strings.Fields(line)
		i := 0
		for _, f := range fields {
			if i < len(cells) && f == cells[i] {
				i++
			}
		}
		if i == len(cells) {
			return true
		}
	}
	return false
}

func find[T any](items []T, match func(T) bool) (T, bool) {
	for _, item := range items {
		if match(item) {
			return item, true
		}
	}
	var zero T
	return zero, false
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func randomHex(t *testing.T, n int) string { return hex.EncodeToString(randomBytes(t, n)) }

func sha256Digest(b []byte) string { return digest.FromBytes(b).String() }
