package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// requireBinary fails (never skips) when an OCI runtime the test drives is
// missing.
func requireBinary(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("this test needs %s (Debian package %s; scripts/setup.sh test installs it): %v", name, name, err)
	}
}

// runscTask is a task for gVisor: runsc keeps its state under the task's
// runtime root, which the options file names.
func runscTask(t *testing.T, id string, args []string) *task {
	t.Helper()
	requireBinary(t, "runsc")
	tk := newTask(t, id, args, false)
	tk.runtime = "runsc"
	return tk
}

// runscConfig writes a runsc.toml, in the format of gVisor's shim, for tk.
// This machine has no KVM: gVisor intercepts system calls with ptrace.
func runscConfig(t *testing.T, tk *task, platform string) string {
	t.Helper()
	body := `# options of gVisor's containerd shim, read by berth's
root = "` + tk.runcRoot + `"
log_level = "debug"

[runsc_config]
platform = "` + platform + `"
network = "none"
`
	path := filepath.Join(t.TempDir(), "runsc.toml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// The options as berthd sends them for a runtime_type io.containerd.runsc.v1
// handler (containerd's CRI encoding), and as the handler's TOML table
// encoded in JSON under gVisor's own type URL.
func runscOptions(t *testing.T, configPath string) map[string]*anypb.Any {
	t.Helper()
	cri, err := proto.Marshal(&runtimeoptions.Options{TypeUrl: "io.containerd.runsc.v1.options", ConfigPath: configPath})
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(map[string]string{"TypeUrl": "io.containerd.runsc.v1.options", "ConfigPath": configPath})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*anypb.Any{
		"runtimeoptions": {TypeUrl: "runtimeoptions.v1.Options", Value: cri},
		"json":           {TypeUrl: "io.containerd.runsc.v1.options", Value: js},
	}
}

// A task whose options select gVisor runs under runsc, with the flags of
// the options file: dmesg shows gVisor's kernel banner.
func TestRunsc(t *testing.T) {
	for name := range runscOptions(t, "") {
		t.Run(name, func(t *testing.T) {
			tk := runscTask(t, "gvisor-"+name, []string{"/bin/busybox", "dmesg"})
			stdout, out := outputFifo(t, t.TempDir(), "stdout")
			req := tk.createRequest(t, stdout, "")
			req.Options = runscOptions(t, runscConfig(t, tk, "ptrace"))[name]
			ctx := context.Background()
			if _, err := tk.shim.Create(ctx, req); err != nil {
				t.Fatalf("Create: %v", err)
			}
			if _, err := tk.shim.Start(ctx, &taskapi.StartRequest{ID: tk.id}); err != nil {
				t.Fatalf("Start: %v", err)
			}
			if w := wait(t, tk, ""); w.ExitStatus != 0 {
				t.Errorf("Wait = %d, want 0", w.ExitStatus)
			}
			if got := receive(t, out); !strings.Contains(got, "Starting gVisor") {
				t.Errorf("dmesg printed %q, want gVisor's banner", got)
			}
			if _, err := tk.shim.Delete(ctx, &taskapi.DeleteRequest{ID: tk.id}); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if err := exec.Command("runsc", "--root", filepath.Join(tk.runcRoot, testNamespace), "state", tk.id).Run(); err == nil {
				t.Error("runsc still knows the container after Delete")
			}
		})
	}
}

// runsc's own error messages reach the caller as runsc wrote them: from
// create (a flag of the options file it rejects) and from start (a
// program that is not in the image).
func TestRunscErrors(t *testing.T) {
	ctx := context.Background()
	tk := runscTask(t, "gvisor-bad-platform", []string{"/bin/busybox", "true"})
	req := tk.createRequest(t, "", "")
	req.Options = runscOptions(t, runscConfig(t, tk, "no-such-platform"))["runtimeoptions"]
	_, err := tk.shim.Create(ctx, req)
	if err == nil || !strings.Contains(err.Error(), "unknown platform: no-such-platform") {
		t.Errorf("Create with a bad platform = %v, want runsc's message", err)
	}

	tk = runscTask(t, "gvisor-no-program", []string{"/bin/no-such-program"})
	req = tk.createRequest(t, "", "")
	req.Options = runscOptions(t, runscConfig(t, tk, "ptrace"))["runtimeoptions"]
	if _, err := tk.shim.Create(ctx, req); err != nil {
		t.Fatalf("Create: %v", err)
	}
	_, err = tk.shim.Start(ctx, &taskapi.StartRequest{ID: tk.id})
	if err == nil || !strings.Contains(err.Error(), "/bin/no-such-program: no such file or directory") {
		t.Errorf("Start of a missing program = %v, want runsc's message", err)
	}
	if _, err := tk.shim.Delete(ctx, &taskapi.DeleteRequest{ID: tk.id}); err != nil {
		t.Errorf("Delete: %v", err)
	}
}

// crunDirect runs crun itself on a bundle like tk's and returns what it
// printed on stderr when it failed, "" when it ran.
func crunDirect(t *testing.T, tk *task, spec *specs.Spec) string {
	t.Helper()
	bundle := t.TempDir()
	direct := *spec
	direct.Root = &specs.Root{Path: tk.rootfs}
	data, err := json.Marshal(&direct)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	cmd := exec.Command("crun", "--root", root, "run", "--bundle", bundle, tk.id+"-direct")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	_ = exec.Command("crun", "--root", root, "delete", "--force", tk.id+"-direct").Run()
	if err == nil {
		return ""
	}
	if strings.TrimSpace(stderr.String()) == "" {
		t.Fatalf("crun failed without a message: %v", err)
	}
	return strings.TrimSpace(stderr.String())
}

// With BinaryName crun the shim runs crun; where crun refuses a container,
// the Create error carries crun's own message. Debian's crun 1.8 refuses
// runtime-spec 1.2 ("unknown version specified") and, given 1.0, a hybrid
// cgroup layout whose v2 hierarchy has controllers, as this machine's.
func TestCrun(t *testing.T) {
	requireBinary(t, "crun")
	for _, version := range []string{specs.Version, "1.0.2"} {
		t.Run(version, func(t *testing.T) {
			spec := testSpec("crun-"+strings.ReplaceAll(version, ".", "-"), []string{"sh", "-c", "echo from-crun"}, false)
			spec.Version = version
			tk := newTaskSpec(t, spec)
			tk.runtime = "crun"
			crunSays := crunDirect(t, tk, spec)
			removeCgroups(tk.id)
			stdout, out := outputFifo(t, t.TempDir(), "stdout")
			req := tk.createRequest(t, stdout, "")
			opts, err := typeurl.MarshalAnyToProto(&options.Options{BinaryName: "crun", Root: tk.runcRoot})
			if err != nil {
				t.Fatal(err)
			}
			req.Options = opts
			ctx := context.Background()
			_, err = tk.shim.Create(ctx, req)
			if crunSays != "" {
				if err == nil || !strings.Contains(err.Error(), crunSays) {
					t.Fatalf("Create = %v, want crun's own %q", err, crunSays)
				}
				t.Logf("crun %s refuses: %s", version, crunSays)
				return
			}
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if _, err := tk.shim.Start(ctx, &taskapi.StartRequest{ID: tk.id}); err != nil {
				t.Fatalf("Start: %v", err)
			}
			if w := wait(t, tk, ""); w.ExitStatus != 0 {
				t.Errorf("Wait = %d", w.ExitStatus)
			}
			if got := receive(t, out); got != "from-crun\n" {
				t.Errorf("stdout = %q", got)
			}
			if _, err := tk.shim.Delete(ctx, &taskapi.DeleteRequest{ID: tk.id}); err != nil {
				t.Fatalf("Delete: %v", err)
			}
		})
	}
}
