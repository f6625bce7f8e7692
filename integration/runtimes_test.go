package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// debianShim is containerd 1.6's runc shim from Debian's containerd package.
const debianShim = "/usr/bin/containerd-shim-runc-v2"

// TestExternalShim points io.containerd.runc.v2 at Debian's
// containerd-shim-runc-v2 through runtime_path and runs containers with
// it: the legacy bootstrap, its events, a daemon restart, kill and delete.
func TestExternalShim(t *testing.T) {
	if _, err := os.Stat(debianShim); err != nil {
		t.Fatalf("%s is needed (apt-get install containerd): %v", debianShim, err)
	}
	d := startDaemon(t, withConfig(`version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  runtime_path = "`+debianShim+`"
`))
	const ns, img = "exshim", "docker.io/library/bbtest:latest"
	t.Cleanup(func() { removeHostState(ns) })
	importImage(t, d, ns, buildBusybox(t, img))

	r := d.ctr("-n", ns, "run", "--rm", "--runtime", "io.containerd.runc.v2", img, "c1", "/bin/echo", "hi")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "hi" {
		t.Fatalf("ctr run --rm with Debian's shim: %v", r)
	}
	r = d.ctr("-n", ns, "run", "--rm", img, "c1", "sh", "-c", "exit 7")
	if r.code != 7 {
		t.Fatalf("exit 7 through Debian's shim: %v", r)
	}

	d.mustCtr("-n", ns, "run", "-d", img, "c2", "sleep", "100")
	bundle := filepath.Join(d.State, "io.containerd.runtime.v2.task", ns, "c2")
	if b, err := os.ReadFile(filepath.Join(bundle, "shim-binary-path")); err != nil || string(b) != debianShim {
		t.Fatalf("c2 runs under %q (%v), want %s", b, err, debianShim)
	}
	pid, status := taskStatus(t, d, ns, "c2")
	if status != "RUNNING" {
		t.Fatalf("c2: %s", status)
	}
	d.stop()
	d.start()
	if got, status := taskStatus(t, d, ns, "c2"); got != pid || status != "RUNNING" {
		t.Fatalf("c2 after restart: pid %q status %q, want %s RUNNING", got, status, pid)
	}
	if out := d.mustCtr("-n", ns, "task", "exec", "--exec-id", "e1", "c2", "echo", "in"); strings.TrimSpace(out) != "in" {
		t.Errorf("exec through Debian's shim printed %q", out)
	}
	d.mustCtr("-n", ns, "task", "kill", "-s", "9", "c2")
	eventually(t, 10*time.Second, func() error {
		if _, status := taskStatus(t, d, ns, "c2"); status != "STOPPED" {
			return fmt.Errorf("c2 is %q, not STOPPED", status)
		}
		return nil
	})
	d.mustCtr("-n", ns, "task", "rm", "c2")
	d.mustCtr("-n", ns, "containers", "rm", "c2")
	if _, err := os.Stat(bundle); !os.IsNotExist(err) {
		t.Errorf("bundle left: %v", err)
	}
}

// TestRuntimeHandlers: handler names from the seed's config resolve, an
// unknown one lists the configured ones, and kata fails at task creation
// naming its missing shim.
func TestRuntimeHandlers(t *testing.T) {
	runscDir := t.TempDir()
	runscToml := filepath.Join(runscDir, "runsc.toml")
	if err := os.WriteFile(runscToml, []byte("[runsc_config]\n  platform = \"ptrace\"\n  network = \"none\"\n  debug = \"true\"\n  debug-log = \""+runscDir+"/\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, withConfig(`version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    SystemdCgroup = false
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc]
  runtime_type = "io.containerd.runsc.v1"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc.options]
    TypeUrl = "io.containerd.runsc.v1.options"
    ConfigPath = "`+runscToml+`"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]
  runtime_type = "io.containerd.kata.v2"
`))
	buildShim(t)
	const ns, img = "handlers", "docker.io/library/bbtest:latest"
	t.Cleanup(func() { removeHostState(ns) })
	importImage(t, d, ns, buildBusybox(t, img))

	// A handler name as the runtime: runc with the configured options.
	r := d.ctr("-n", ns, "run", "--rm", "--runtime", "runc", img, "h1", "/bin/echo", "via handler")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "via handler" {
		t.Fatalf("--runtime runc: %v", r)
	}

	// The seed's gVisor block as written: berth's shim drives runsc with
	// the flags of the runsc.toml the handler names (debug logs included).
	r = d.ctr("-n", ns, "run", "--rm", "--runtime", "runsc", img, "g1", "/bin/busybox", "dmesg")
	if r.code != 0 || !strings.Contains(r.stdout, "Starting gVisor") {
		t.Fatalf("--runtime runsc: no gVisor banner: %v", r)
	}
	if logs, _ := filepath.Glob(filepath.Join(runscDir, "*")); len(logs) < 2 {
		t.Errorf("runsc.toml's debug-log wrote no logs into %s: %v", runscDir, logs)
	}

	out := d.ctrFails("-n", ns, "run", "--rm", "--runtime", "gvisor2", img, "h2", "/bin/echo")
	for _, want := range []string{`"gvisor2" is not configured`, "crun, kata, runc, runsc"} {
		if !strings.Contains(out, want) {
			t.Errorf("unknown handler error %q lacks %q", out, want)
		}
	}

	out = d.ctrFails("-n", ns, "run", "--rm", "--runtime", "kata", img, "h3", "/bin/echo")
	if !strings.Contains(out, "containerd-shim-kata-v2 not found in PATH") {
		t.Errorf("kata error %q does not name containerd-shim-kata-v2", out)
	}
	if out := d.mustCtr("-n", ns, "containers", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("containers left after failed runs: %s", out)
	}
	if entries, _ := os.ReadDir(filepath.Join(d.State, "io.containerd.runtime.v2.task", ns)); len(entries) > 0 {
		t.Errorf("bundles left: %v", entries)
	}
}
