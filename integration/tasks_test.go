package integration

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var (
	shimOnce sync.Once
	shimErr  error
)

// buildShim builds berth-shim-runc-v2 where berthd's shim manager looks
// first: next to the berthd binary. For a berthd given by $BERTHD, it goes
// into the scratch directory put first in PATH, the manager's fallback.
func buildShim(t *testing.T) {
	t.Helper()
	shimOnce.Do(func() {
		dir := filepath.Dir(berthdPath)
		if !builtHere {
			dir = scratchDir
			os.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "berth-shim-runc-v2"), "github.com/berth-dev/berth/cmd/berth-shim-runc-v2")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			shimErr = fmt.Errorf("build berth-shim-runc-v2: %w\n%s", err, out)
		}
	})
	if shimErr != nil {
		t.Fatal(shimErr)
	}
}

// buildBusybox writes an OCI archive of image name: one layer with
// /bin/busybox and sh, echo and sleep linked to it, and Cmd sh.
func buildBusybox(t *testing.T, name string) string {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static is needed: %v", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	write := func(h *tar.Header, data []byte) {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	write(&tar.Header{Name: "bin/", Mode: 0o755, Typeflag: tar.TypeDir}, nil)
	write(&tar.Header{Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb)), Typeflag: tar.TypeReg}, bb)
	for _, l := range []string{"sh", "echo", "sleep"} {
		write(&tar.Header{Name: "bin/" + l, Linkname: "busybox", Mode: 0o777, Typeflag: tar.TypeSymlink}, nil)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer := buf.Bytes()
	layerDesc := descriptor(ocispec.MediaTypeImageLayer, layer)
	config := mustJSON(t, ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config:   ocispec.ImageConfig{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerDesc.Digest}},
	})
	configDesc := descriptor(ocispec.MediaTypeImageConfig, config)
	manifest := mustJSON(t, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    configDesc,
		Layers:    []ocispec.Descriptor{layerDesc},
	})
	manifestDesc := descriptor(ocispec.MediaTypeImageManifest, manifest)
	manifestDesc.Annotations = map[string]string{"io.containerd.image.name": name}
	index := mustJSON(t, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{manifestDesc},
	})
	files := map[string]string{
		ocispec.ImageLayoutFile: `{"imageLayoutVersion":"1.0.0"}`,
		"index.json":            string(index),
	}
	for _, b := range [][]byte{layer, config, manifest} {
		files["blobs/sha256/"+digest.FromBytes(b).Encoded()] = string(b)
	}
	path := filepath.Join(t.TempDir(), "busybox.tar")
	if err := os.WriteFile(path, tarOf(t, files), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// removeHostState removes the namespace's empty directories left on the
// host: its cgroups (runc removes only each container's own, as under
// containerd) and the shim's runc root, and that root's parents if empty.
func removeHostState(ns string) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + ns)
	dirs = append(dirs, "/sys/fs/cgroup/"+ns, "/run/berth/runc/"+ns, "/run/berth/runc", "/run/berth")
	for _, dir := range dirs {
		_ = os.Remove(dir)
	}
}

// taskStatus returns the PID and STATUS columns of `ctr task ls` for id.
func taskStatus(t *testing.T, d *daemon, ns, id string) (pid, status string) {
	t.Helper()
	for _, line := range strings.Split(d.mustCtr("-n", ns, "task", "ls"), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == id {
			return f[1], f[2]
		}
	}
	return "", ""
}

// TestTasks runs busybox containers with ctr: run --rm in the foreground,
// a detached task killed and removed, an exec, and the task events.
func TestTasks(t *testing.T) {
	d := startDaemon(t)
	buildShim(t)
	// Not "tasks": ctr puts containers in cgroup /<ns>/<id>, and on cgroup v1
	// /sys/fs/cgroup/<controller>/tasks is a file.
	const ns, img = "tasktest", "docker.io/library/bbtest:latest"
	t.Cleanup(func() { removeHostState(ns) })
	importImage(t, d, ns, buildBusybox(t, img))
	events := d.ctrBackground(nil, "events")
	subscribed(t, d, events)

	t.Run("run --rm", func(t *testing.T) {
		r := d.ctr("-n", ns, "run", "--rm", img, "c1", "/bin/echo", "hello")
		if r.code != 0 || strings.TrimSpace(r.stdout) != "hello" {
			t.Fatalf("ctr run --rm: %v", r)
		}
		if out := d.mustCtr("-n", ns, "containers", "ls", "-q"); strings.Contains(out, "c1") {
			t.Errorf("c1 not removed: %s", out)
		}
		for _, topic := range []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"} {
			waitOutput(t, "ctr events", events, ns+" "+topic)
		}
	})

	t.Run("detached kill rm", func(t *testing.T) {
		d.mustCtr("-n", ns, "run", "-d", img, "c2", "sleep", "100")
		pid, status := taskStatus(t, d, ns, "c2")
		if status != "RUNNING" || pid == "" || pid == "0" {
			t.Fatalf("c2 after run -d: pid %q status %q", pid, status)
		}
		if _, err := os.Stat("/proc/" + pid); err != nil {
			t.Fatalf("c2's pid %s is not a process: %v", pid, err)
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
		if _, status := taskStatus(t, d, ns, "c2"); status != "" {
			t.Errorf("c2 still listed as %s", status)
		}
	})

	t.Run("exec", func(t *testing.T) {
		d.mustCtr("-n", ns, "run", "-d", img, "c3", "sleep", "100")
		out := d.mustCtr("-n", ns, "task", "exec", "--exec-id", "e1", "c3", "echo", "hi")
		if strings.TrimSpace(out) != "hi" {
			t.Errorf("exec printed %q, want hi", out)
		}
		pid, _ := taskStatus(t, d, ns, "c3")
		if ps := d.mustCtr("-n", ns, "task", "ps", "c3"); !strings.Contains(ps, pid) {
			t.Errorf("task ps c3 lacks the init pid %s:\n%s", pid, ps)
		}
		d.mustCtr("-n", ns, "task", "pause", "c3")
		if _, status := taskStatus(t, d, ns, "c3"); status != "PAUSED" {
			t.Errorf("c3 after pause: %s", status)
		}
		d.mustCtr("-n", ns, "task", "resume", "c3")
		if _, status := taskStatus(t, d, ns, "c3"); status != "RUNNING" {
			t.Errorf("c3 after resume: %s", status)
		}
		if m := d.mustCtr("-n", ns, "task", "metrics", "c3"); !strings.Contains(m, "memory.usage_in_bytes") {
			t.Errorf("task metrics c3 lacks memory usage:\n%s", m)
		}
		d.mustCtr("-n", ns, "task", "kill", "-s", "9", "c3")
		eventually(t, 10*time.Second, func() error {
			if _, status := taskStatus(t, d, ns, "c3"); status != "STOPPED" {
				return fmt.Errorf("c3 is %q, not STOPPED", status)
			}
			return nil
		})
		d.mustCtr("-n", ns, "task", "rm", "c3")
		d.mustCtr("-n", ns, "containers", "rm", "c3")
	})

	t.Run("restart", func(t *testing.T) {
		d.mustCtr("-n", ns, "run", "-d", img, "c4", "sleep", "100")
		pid, _ := taskStatus(t, d, ns, "c4")
		d.stop()
		d.start()
		if got, status := taskStatus(t, d, ns, "c4"); got != pid || status != "RUNNING" {
			t.Fatalf("c4 after restart: pid %q status %q, want %s RUNNING", got, status, pid)
		}
		d.mustCtr("-n", ns, "task", "kill", "-s", "9", "c4")
		eventually(t, 10*time.Second, func() error {
			if _, status := taskStatus(t, d, ns, "c4"); status != "STOPPED" {
				return fmt.Errorf("c4 is %q, not STOPPED", status)
			}
			return nil
		})
		d.mustCtr("-n", ns, "task", "rm", "c4")
		d.mustCtr("-n", ns, "containers", "rm", "c4")
	})

	t.Run("shim died while stopped", func(t *testing.T) {
		d.mustCtr("-n", ns, "run", "-d", img, "c5", "sleep", "100")
		pid, _ := taskStatus(t, d, ns, "c5")
		bundle := filepath.Join(d.State, "io.containerd.runtime.v2.task", ns, "c5")
		shimPid, err := os.ReadFile(filepath.Join(bundle, "shim.pid"))
		if err != nil {
			t.Fatal(err)
		}
		d.stop()
		for _, p := range []string{strings.TrimSpace(string(shimPid)), pid} {
			if out, err := exec.Command("kill", "-9", p).CombinedOutput(); err != nil {
				t.Fatalf("kill %s: %v %s", p, err, out)
			}
		}
		d.start()
		if _, status := taskStatus(t, d, ns, "c5"); status != "" {
			t.Errorf("c5 listed as %s after its shim died", status)
		}
		if _, err := os.Stat(bundle); !os.IsNotExist(err) {
			t.Errorf("bundle of c5 not removed: %v", err)
		}
		d.mustCtr("-n", ns, "containers", "rm", "c5")
	})

	if entries, err := os.ReadDir(filepath.Join(d.State, "io.containerd.runtime.v2.task", ns)); err == nil && len(entries) > 0 {
		t.Errorf("bundles left behind: %v", entries)
	}
}
