package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// runEnv is the setting of TestRun: one berthd, one registry with the
// test images, and a data root of the CLI's own.
type runEnv struct {
	d        *daemon
	ns       string
	dataRoot string
	img      string // busybox with /etc/passwd, /www and Cmd sh
	noCmd    string // the same without Cmd or Entrypoint
}

// berth runs the berth CLI with the env's data root.
func (e *runEnv) berth(t *testing.T, args ...string) result {
	t.Helper()
	return runBerthCLI(t, e.d, e.ns, append([]string{"--data-root", e.dataRoot}, args...)...)
}

// mustBerth runs berth and fails the test unless it exits 0.
func (e *runEnv) mustBerth(t *testing.T, args ...string) string {
	t.Helper()
	r := e.berth(t, args...)
	if r.code != 0 {
		t.Fatalf("berth %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// berthFails runs berth, fails the test unless it exits non-zero, and
// returns its stderr.
func (e *runEnv) berthFails(t *testing.T, args ...string) string {
	t.Helper()
	r := e.berth(t, args...)
	if r.code == 0 {
		t.Fatalf("berth %s succeeded, want an error: %s", strings.Join(args, " "), r)
	}
	return r.stderr
}

// removeAtCleanup removes container name when the test ends, so that a
// failed test leaves nothing running.
func (e *runEnv) removeAtCleanup(t *testing.T, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
		defer cancel()
		_ = berthCmd(ctx, t, e.d, e.ns, "--data-root", e.dataRoot, "rm", "-f", name).Run()
	})
}

// berthBackground starts berth; it is killed at cleanup if still running.
func (e *runEnv) berthBackground(t *testing.T, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	b.cmd = berthCmd(ctx, t, e.d, e.ns, append([]string{"--data-root", e.dataRoot}, args...)...)
	b.cmd.Stdout, b.cmd.Stderr = b.stdout, b.stderr
	if err := b.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start berth %s: %v", strings.Join(args, " "), err)
	}
	go func() { b.err = b.cmd.Wait(); close(b.exited) }()
	t.Cleanup(func() { cancel(); <-b.exited })
	return b
}

// pushRunImage pushes a one-layer-plus-files busybox image with config cfg
// to reg as repoTag and returns its reference.
func pushRunImage(t *testing.T, reg *testRegistry, repoTag string, cfg ocispec.ImageConfig) string {
	t.Helper()
	layers := []regLayer{busyboxLayer(t), filesLayer(t, map[string]string{
		"etc/passwd":     "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n",
		"etc/group":      "root:x:0:\nnogroup:x:65534:\n",
		"www/index.html": "hello from berth\n",
	})}
	l := newLayout(t)
	img := ocispec.Image{Platform: hostPlatform(), Config: cfg, RootFS: ocispec.RootFS{Type: "layers"}}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	for _, layer := range layers {
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, layer.diffID)
		m.Layers = append(m.Layers, l.blob(layer.desc.MediaType, layer.blob))
	}
	m.Config = l.blob(ocispec.MediaTypeImageConfig, mustJSON(t, img))
	l.tag("t", l.blob(ocispec.MediaTypeImageManifest, mustJSON(t, m)))
	ref := reg.ref(repoTag)
	l.push("t", ref)
	return ref
}

// TestRun drives the nerdctl-like container commands of the berth CLI
// against a real berthd, runc, CNI plugins and registry.
func TestRun(t *testing.T) {
	d := startDaemon(t)
	buildShim(t)
	reg := startRegistry(t)
	const ns = "runtest"
	t.Cleanup(func() { removeHostState(ns) })
	e := &runEnv{d: d, ns: ns, dataRoot: t.TempDir(),
		img:   pushRunImage(t, reg, "run/busybox:1", ocispec.ImageConfig{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}}),
		noCmd: pushRunImage(t, reg, "run/nocmd:1", ocispec.ImageConfig{Env: []string{"PATH=/bin"}}),
	}

	// Whatever a failed subtest left running goes before berthd stops, so
	// that no shim outlives the test.
	t.Cleanup(func() {
		if ids := strings.Fields(e.berth(t, "ps", "-a", "-q").stdout); len(ids) > 0 {
			e.berth(t, append([]string{"rm", "-f"}, ids...)...)
		}
	})
	t.Run("run --rm", func(t *testing.T) { testRunRm(t, e) })
	t.Run("unpacks an image", func(t *testing.T) { testRunUnpacks(t, e) })
	t.Run("stdin and signals", func(t *testing.T) { testRunStdinSignals(t, e) })
	t.Run("detached logs", func(t *testing.T) { testRunLogs(t, e) })
	t.Run("exec ps stop start", func(t *testing.T) { testRunLifecycle(t, e) })
	t.Run("errors leave nothing", func(t *testing.T) { testRunErrors(t, e) })
	t.Run("volume and user", func(t *testing.T) { testRunVolumeUser(t, e) })
	t.Run("bridge port", func(t *testing.T) { testRunBridge(t, e) })
	t.Run("network none", func(t *testing.T) { testRunNone(t, e) })
	t.Run("ctr container", func(t *testing.T) { testRunCtrContainer(t, e) })
	t.Run("runtimes", func(t *testing.T) { testRunRuntimes(t, e) })

	if out := e.mustBerth(t, "ps", "-a", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("containers left behind:\n%s", out)
	}
	if entries, err := os.ReadDir(filepath.Join(d.State, "io.containerd.runtime.v2.task", ns)); err == nil && len(entries) > 0 {
		t.Errorf("bundles left behind: %v", entries)
	}
}

func testRunRm(t *testing.T, e *runEnv) {
	r := e.berth(t, "run", "--rm", e.img, "echo", "hello")
	if r.code != 0 || r.stdout != "hello\n" {
		t.Fatalf("run --rm echo hello (pulling the image): %s", r)
	}
	if r := e.berth(t, "run", "--rm", e.img, "sh", "-c", "echo out; echo err >&2; exit 3"); r.code != 3 ||
		r.stdout != "out\n" || !strings.Contains(r.stderr, "err\n") {
		t.Errorf("run --rm sh -c 'exit 3': %s, want exit 3 with out and err", r)
	}
	if out := e.mustBerth(t, "ps", "-a", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("run --rm left containers:\n%s", out)
	}
}

// testRunUnpacks runs an image that ctr imported without unpacking it.
func testRunUnpacks(t *testing.T, e *runEnv) {
	const name = "docker.io/library/packed:1"
	importImage(t, e.d, e.ns, buildBusybox(t, name), "--no-unpack")
	before := e.d.mustCtr("-n", e.ns, "snapshots", "ls")
	if got := e.mustBerth(t, "run", "--rm", "--pull", "never", "packed:1", "echo", "unpacked"); got != "unpacked\n" {
		t.Errorf("run of a packed image printed %q", got)
	}
	if after := e.d.mustCtr("-n", e.ns, "snapshots", "ls"); after == before {
		t.Errorf("no snapshot made for the packed image:\n%s", after)
	}
}

func testRunStdinSignals(t *testing.T, e *runEnv) {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := berthCmd(ctx, t, e.d, e.ns, "--data-root", e.dataRoot, "run", "--rm", "-i", e.img, "cat")
	cmd.Stdin = strings.NewReader("piped\n")
	if out, err := cmd.Output(); err != nil || string(out) != "piped\n" {
		t.Errorf("run -i cat with piped input: %q, %v", out, err)
	}

	// SIGINT to berth goes to the container, whose exit status berth takes.
	b := e.berthBackground(t, "run", "--rm", e.img, "sh", "-c",
		`trap 'echo got INT; exit 9' INT; echo ready; while :; do busybox sleep 0.1; done`)
	waitOutput(t, "berth run", b, "ready\n")
	if err := b.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if !b.wait(20 * time.Second) {
		t.Fatalf("berth run still running after SIGINT; printed:\n%s", b.stdout)
	}
	if code := b.cmd.ProcessState.ExitCode(); code != 9 || !strings.Contains(b.stdout.String(), "got INT") {
		t.Errorf("after SIGINT: exit %d, printed %q, want 9 and got INT", code, b.stdout)
	}
}

func testRunLogs(t *testing.T, e *runEnv) {
	e.removeAtCleanup(t, "lg")
	id := strings.TrimSpace(e.mustBerth(t, "run", "-d", "--name", "lg", e.img, "sh", "-c",
		"echo first; while [ ! -e /www/go ]; do busybox sleep 0.1; done; echo second; busybox sleep 0.2; echo err >&2; busybox sleep 0.2; echo third"))
	if len(id) != 64 {
		t.Fatalf("run -d printed %q, want a 64-digit ID", id)
	}
	follow := e.berthBackground(t, "logs", "-f", "lg")
	waitOutput(t, "berth logs -f", follow, "first\n")
	e.mustBerth(t, "exec", "lg", "sh", "-c", "> /www/go")
	if !follow.wait(20 * time.Second) {
		t.Fatalf("logs -f still running after the container exited; printed:\n%s", follow.stdout)
	}
	// The shim copies stdout and stderr to the log file apart: the sleeps
	// order them.
	if got := follow.stdout.String(); got != "first\nsecond\nerr\nthird\n" || follow.err != nil {
		t.Errorf("logs -f printed %q (%v), want first second err third", got, follow.err)
	}
	if got := e.mustBerth(t, "logs", "--tail", "1", id[:8]); got != "third\n" {
		t.Errorf("logs --tail 1 by ID prefix printed %q", got)
	}
	if got := e.mustBerth(t, "ps"); strings.Contains(got, id[:12]) {
		t.Errorf("ps lists the exited container:\n%s", got)
	}
	if got := e.mustBerth(t, "ps", "-a"); !hasRow(got, id[:12], "Exited (0)", "lg") {
		t.Errorf("ps -a lacks lg as exited:\n%s", got)
	}
	e.mustBerth(t, "rm", "lg")
}

func testRunLifecycle(t *testing.T, e *runEnv) {
	e.removeAtCleanup(t, "ex")
	id := strings.TrimSpace(e.mustBerth(t, "run", "-d", "--name", "ex", e.img, "busybox", "sleep", "1000"))
	if got := e.mustBerth(t, "exec", "ex", "echo", "hi"); got != "hi\n" {
		t.Errorf("exec echo hi printed %q", got)
	}
	if r := e.berth(t, "exec", "-e", "X=1", "-w", "/www", "ex", "sh", "-c", "echo $X $(pwd); exit 4"); r.code != 4 || r.stdout != "1 /www\n" {
		t.Errorf("exec with -e -w and exit 4: %s", r)
	}
	if got := e.mustBerth(t, "ps"); !hasRow(got, id[:12], e.img, "Up", "ex") {
		t.Errorf("ps lacks ex running:\n%s", got)
	}
	var views []struct{ ID, Name, Status string }
	if err := json.Unmarshal([]byte(e.mustBerth(t, "ps", "--format", "json")), &views); err != nil || len(views) != 1 ||
		views[0].ID != id || views[0].Name != "ex" || views[0].Status != "running" {
		t.Errorf("ps --format json: %+v (%v)", views, err)
	}
	testInspect(t, e, id)
	if got := e.mustBerth(t, "top", "ex"); !strings.Contains(got, "busybox sleep 1000") {
		t.Errorf("top ex lacks the sleep:\n%s", got)
	}
	if got := e.mustBerth(t, "stats", "--no-stream", "ex"); !hasRow(got, id[:12], "ex", "1") {
		t.Errorf("stats --no-stream ex lacks its row with 1 pid:\n%s", got)
	}

	// busybox sleep as PID 1 ignores SIGTERM: stop kills it after -t.
	start := time.Now()
	e.mustBerth(t, "stop", "-t", "1", "ex")
	if took := time.Since(start); took < time.Second {
		t.Errorf("stop -t 1 took %s, want the 1s of grace", took)
	}
	if got := e.mustBerth(t, "ps", "-a"); !hasRow(got, id[:12], "Exited (137)") {
		t.Errorf("ps -a after stop:\n%s", got)
	}
	e.mustBerth(t, "start", "ex")
	if got := e.mustBerth(t, "exec", "ex", "echo", "again"); got != "again\n" {
		t.Errorf("exec after start printed %q", got)
	}
	if stderr := e.berthFails(t, "rm", "ex"); !strings.Contains(stderr, "is running") {
		t.Errorf("rm of a running container: %s", stderr)
	}
	e.mustBerth(t, "rm", "-f", "ex")
	if got := e.mustBerth(t, "ps", "-a", "-q"); strings.Contains(got, id[:12]) {
		t.Errorf("ex still listed after rm -f:\n%s", got)
	}
	if out := e.d.mustCtr("-n", e.ns, "snapshots", "ls"); strings.Contains(out, id) {
		t.Errorf("snapshot of ex left after rm -f:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(e.dataRoot, "containers", e.ns, id)); !os.IsNotExist(err) {
		t.Errorf("files of ex left after rm -f: %v", err)
	}
}

// testInspect checks the fields of inspect for the running container id.
func testInspect(t *testing.T, e *runEnv, id string) {
	var views []struct {
		ID, Name, Image, Snapshotter, SnapshotKey, LogPath string
		Runtime                                            struct{ Name string }
		Spec                                               struct {
			Hostname string
			Process  struct{ Args []string }
		}
		Task *struct {
			Status string
			Pid    int
		}
		Network *struct{ IP, Interface string }
	}
	if err := json.Unmarshal([]byte(e.mustBerth(t, "inspect", "ex")), &views); err != nil || len(views) != 1 {
		t.Fatalf("inspect ex: %v, %d views", err, len(views))
	}
	v := views[0]
	if v.ID != id || v.Name != "ex" || v.Image != e.img || v.Runtime.Name != "io.containerd.runc.v2" ||
		v.Snapshotter != "overlayfs" || v.SnapshotKey != id || v.Spec.Hostname != id[:12] ||
		strings.Join(v.Spec.Process.Args, " ") != "busybox sleep 1000" {
		t.Errorf("inspect ex: %+v", v)
	}
	if v.Task == nil || v.Task.Status != "RUNNING" || !exists(fmt.Sprintf("/proc/%d", v.Task.Pid)) {
		t.Errorf("inspect ex: task %+v, want RUNNING with a live pid", v.Task)
	}
	if v.Network == nil || v.Network.IP == "" || v.Network.Interface != "eth0" {
		t.Errorf("inspect ex: network %+v, want the bridge's address", v.Network)
	}
	if want := filepath.Join(e.dataRoot, "containers", e.ns, id, id+".log"); v.LogPath != want {
		t.Errorf("inspect ex: log path %q, want %q", v.LogPath, want)
	}
}

func testRunErrors(t *testing.T, e *runEnv) {
	e.removeAtCleanup(t, "dup")
	e.mustBerth(t, "run", "-d", "--name", "dup", e.img, "busybox", "sleep", "1000")
	if stderr := e.berthFails(t, "run", "--name", "dup", e.img, "true"); !strings.Contains(stderr, `name "dup" is in use by container`) {
		t.Errorf("second --name dup: %s", stderr)
	}
	e.mustBerth(t, "rm", "-f", "dup")
	snapshots := e.d.mustCtr("-n", e.ns, "snapshots", "ls")
	if stderr := e.berthFails(t, "run", e.noCmd); !strings.Contains(stderr, "has no command: give one after the image name") {
		t.Errorf("run of an image without command: %s", stderr)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	if stderr := e.berthFails(t, "run", "--rm", "-v", missing+":/data", e.img, "true"); !strings.Contains(stderr, missing) ||
		!strings.Contains(stderr, "does not exist") {
		t.Errorf("run -v of a missing host path: %s", stderr)
	}
	if stderr := e.berthFails(t, "run", "--network", "host", "-p", "8080:80", e.img, "true"); !strings.Contains(stderr, "-p") {
		t.Errorf("run -p with --network host: %s", stderr)
	}
	if out := e.d.mustCtr("-n", e.ns, "containers", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("container records left by failed runs:\n%s", out)
	}
	if out := e.d.mustCtr("-n", e.ns, "snapshots", "ls"); out != snapshots {
		t.Errorf("snapshots changed by failed runs:\n%s\nwas:\n%s", out, snapshots)
	}
}

func testRunVolumeUser(t *testing.T, e *runEnv) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := e.mustBerth(t, "run", "--rm", "-v", dir+":/data:ro", e.img, "cat", "/data/f"); got != "from the host\n" {
		t.Errorf("cat of a bound file printed %q", got)
	}
	if r := e.berth(t, "run", "--rm", "-v", dir+":/data:ro", e.img, "sh", "-c", "> /data/g"); r.code == 0 {
		t.Errorf("wrote to a read-only volume: %s", r)
	}
	if got := e.mustBerth(t, "run", "--rm", "--user", "nobody", e.img, "sh", "-c", "busybox id -u; busybox id -g"); got != "65534\n65534\n" {
		t.Errorf("--user nobody: id printed %q, want 65534 twice", got)
	}
}

func testRunBridge(t *testing.T, e *runEnv) {
	addr := freeAddr(t)
	port := addr[strings.LastIndex(addr, ":")+1:]
	e.removeAtCleanup(t, "web")
	e.mustBerth(t, "run", "-d", "--name", "web", "-p", "127.0.0.1:"+port+":80", e.img,
		"busybox", "httpd", "-f", "-p", "80", "-h", "/www")
	client := &http.Client{Timeout: 2 * time.Second}
	eventually(t, 20*time.Second, func() error {
		resp, err := client.Get("http://" + addr + "/index.html")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if string(body) != "hello from berth\n" {
			return fmt.Errorf("GET %s: %s %q", addr, resp.Status, body)
		}
		return nil
	})
	if got := e.mustBerth(t, "ps"); !hasRow(got, "127.0.0.1:"+port+"->80/tcp", "web") {
		t.Errorf("ps lacks web's port:\n%s", got)
	}
	e.mustBerth(t, "rm", "-f", "web")
	if resp, err := client.Get("http://" + addr + "/index.html"); err == nil {
		resp.Body.Close()
		t.Errorf("port %s still answers after rm -f: %s", port, resp.Status)
	}
	if entries, _ := os.ReadDir(filepath.Join(e.dataRoot, "networks", e.ns)); len(entries) > 0 {
		t.Errorf("network records left after rm -f: %v", entries)
	}
}

func testRunNone(t *testing.T, e *runEnv) {
	out := e.mustBerth(t, "run", "--rm", "--network", "none", e.img, "busybox", "ip", "-o", "link")
	var links []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			links = append(links, strings.TrimSuffix(f[1], ":"))
		}
	}
	if strings.Join(links, ",") != "lo" {
		t.Errorf("--network none has links %v, want only lo:\n%s", links, out)
	}
}

// testRunRuntimes: the built-in runsc handler runs the container in
// gVisor (its dmesg is gVisor's, not the host's ring buffer), on the
// bridge network too; crun is reached and its own refusal of this
// machine's hybrid cgroup layout comes back verbatim (where crun accepts
// the layout, the container must run).
func testRunRuntimes(t *testing.T, e *runEnv) {
	for _, args := range [][]string{{"--network", "none"}, {}} {
		out := e.mustBerth(t, append(append([]string{"run", "--rm", "--runtime", "runsc"}, args...), e.img, "busybox", "dmesg")...)
		if !strings.Contains(out, "Starting gVisor") {
			t.Errorf("dmesg under runsc %v printed no gVisor banner:\n%s", args, out)
		}
	}
	r := e.berth(t, "run", "--rm", "--runtime", "crun", e.img, "busybox", "echo", "crun ran")
	if r.code == 0 {
		if strings.TrimSpace(r.stdout) != "crun ran" {
			t.Errorf("crun ran but printed %q", r.stdout)
		}
		return
	}
	if !strings.Contains(r.stderr, "crun") || !strings.Contains(r.stderr, "cgroups in hybrid mode not supported") {
		t.Errorf("crun's refusal is not passed through verbatim: %s", r.stderr)
	}
	if out := e.mustBerth(t, "ps", "-a", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("a failed crun run left containers: %s", out)
	}
}

func testRunCtrContainer(t *testing.T, e *runEnv) {
	e.removeAtCleanup(t, "ctr1")
	e.d.mustCtr("-n", e.ns, "run", "-d", e.img, "ctr1", "busybox", "sleep", "1000")
	if got := e.mustBerth(t, "ps"); !hasRow(got, "ctr1", e.img, "Up") {
		t.Errorf("ps lacks ctr's container:\n%s", got)
	}
	e.mustBerth(t, "rm", "-f", "ctr1")
	if out := e.d.mustCtr("-n", e.ns, "containers", "ls", "-q"); strings.Contains(out, "ctr1") {
		t.Errorf("ctr1 still a container after berth rm -f:\n%s", out)
	}
	if out := e.d.mustCtr("-n", e.ns, "snapshots", "ls"); strings.Contains(out, "ctr1") {
		t.Errorf("snapshot of ctr1 left after berth rm -f:\n%s", out)
	}
}

// hasRow reports whether a line of a table holds every one of cells as
// whole space-separated words or phrases.
func hasRow(out string, cells ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		ok := true
		for _, c := range cells {
			if !strings.Contains(" "+strings.Join(strings.Fields(line), " ")+" ", " "+c+" ") {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
