package network

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestHooksWithRunc runs a real container with runc, its spec carrying
// Hooks and the annotations the CLI sets, the test binary standing in
// for `berth internal oci-hook`: createRuntime attaches it, and
// `runc delete` after it exited runs postStop, which detaches it.
func TestHooksWithRunc(t *testing.T) {
	n := newTestNet(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	id, port := "runc", freePort(t)
	ports, _ := json.Marshal([]PortMapping{{HostPort: port, ContainerPort: 80, Protocol: "tcp"}})
	bundle := t.TempDir()
	spec := runcSpec(n.ns, id, []string{"nc", "-ll", "-p", "80", "-e", "echo", "hi"})
	spec.Hooks = Hooks(exe, n.m.cfg)
	spec.Annotations = map[string]string{AnnotationNamespace: n.ns, AnnotationNetwork: "bridge", AnnotationPorts: string(ports)}
	writeBundle(t, bundle, spec)

	r := &runcCLI{root: filepath.Join(t.TempDir(), "runc")}
	t.Cleanup(func() { r.run("delete", "--force", id) })
	if out, err := r.runDetached(t, bundle, id); err != nil {
		t.Fatalf("runc run: %v: %s", err, out)
	}
	res, err := n.m.Status(n.ns, id)
	if err != nil {
		t.Fatalf("after createRuntime: %v", err)
	}
	var st specs.State
	out, err := r.run("state", id)
	if err != nil || json.Unmarshal(out, &st) != nil {
		t.Fatalf("runc state: %v: %s", err, out)
	}
	// runc returns once nc runs, maybe before it listens.
	waitServing(t, net.JoinHostPort(res.IP, "80"))
	n.checkAttached(t, id, res, "/proc/"+strconv.Itoa(st.Pid)+"/ns/net")
	if got, err := dial(net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))); got != "hi\n" {
		t.Errorf("published port: %q, %v", got, err)
	}

	if out, err := r.run("kill", id, "KILL"); err != nil {
		t.Fatalf("runc kill: %v: %s", err, out)
	}
	r.waitStopped(t, id)
	if _, err := n.m.Status(n.ns, id); err != nil {
		t.Errorf("detached before runc delete, which runs postStop: %v", err)
	}
	if out, err := r.run("delete", id); err != nil {
		t.Fatalf("runc delete: %v: %s", err, out)
	}
	n.checkDetached(t, id, res.IP)
}

func waitServing(t *testing.T, addr string) {
	t.Helper()
	var err error
	for range 100 {
		var got string
		if got, err = dial(addr); got == "hi\n" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing serves %s after 5s: %v", addr, err)
}

type runcCLI struct{ root string }

func (r *runcCLI) run(args ...string) ([]byte, error) {
	return exec.Command("runc", append([]string{"--root", r.root}, args...)...).CombinedOutput()
}

// runDetached starts a container. Its stdio is runc's: files, not the
// pipes of CombinedOutput, which would stay open while it runs.
func (r *runcCLI) runDetached(t *testing.T, bundle, id string) ([]byte, error) {
	logPath := filepath.Join(t.TempDir(), "runc.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command("runc", "--root", r.root, "run", "--detach", "--bundle", bundle, id)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	err = cmd.Run()
	out, _ := os.ReadFile(logPath)
	return out, err
}

func (r *runcCLI) waitStopped(t *testing.T, id string) {
	t.Helper()
	for range 100 {
		out, err := r.run("state", id)
		var st specs.State
		if err == nil && json.Unmarshal(out, &st) == nil && st.Status == specs.StateStopped {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("container %s did not stop", id)
}

// runcSpec is a minimal spec, close to `runc spec`, with a network
// namespace of its own.
func runcSpec(ns, id string, args []string) *specs.Spec {
	caps := []string{"CAP_NET_BIND_SERVICE", "CAP_KILL"}
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Args: args, Env: []string{"PATH=/bin"}, Cwd: "/", NoNewPrivileges: true,
			Capabilities: &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "mode=755"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/berth-network-test/" + ns + "-" + id,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
		},
	}
}

// writeBundle lays out a busybox rootfs and config.json in dir.
func writeBundle(t *testing.T, dir string, spec *specs.Spec) {
	t.Helper()
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "dev"} {
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
	for _, applet := range []string{"nc", "echo", "sh"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
