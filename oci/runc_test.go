package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// requireRunc returns the runc binary, failing (never skipping) where the
// test cannot run: make test's setup installs runc and busybox-static.
func requireRunc(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("running a spec under runc needs root")
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatalf("running a spec needs runc (apt-get install runc): %v", err)
	}
	return runc
}

// busyboxRootfs lays out a rootfs of the static busybox with the applets
// the tests run, and an /etc/passwd and /etc/group.
func busyboxRootfs(t *testing.T, rootfs string) {
	t.Helper()
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatalf("the rootfs needs a static busybox (apt-get install busybox-static): %v", err)
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"etc/passwd": testPasswd, "etc/group": testGroup, "tmp/.keep": ""}
	for _, applet := range []string{"sh", "id", "cat", "grep", "hostname"} {
		files["bin/"+applet] = "@busybox"
	}
	writeTree(t, rootfs, files)
	if err := os.WriteFile(filepath.Join(rootfs, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// runSpec writes s into a new bundle around rootfs and runs it to the end
// with runc, returning what it printed.
func runSpec(t *testing.T, runc, id string, s *specs.Spec) string {
	t.Helper()
	bundle := t.TempDir()
	runcRoot := t.TempDir()
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(s.Root.Path) {
		t.Fatalf("root %q: the test wants an absolute rootfs", s.Root.Path)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Cleanup(func() {
		_ = exec.Command(runc, "--root", runcRoot, "delete", "--force", id).Run()
	})
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, runc, "--root", runcRoot, "run", "--bundle", bundle, id)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("runc run %s: %v\nstdout:\n%s\nstderr:\n%s\nspec:\n%s", id, err, stdout.String(), stderr.String(), data)
	}
	return stdout.String()
}

// The generated spec runs under the real runc: the default one as root
// with the default seccomp profile, and the options a `run` uses most.
func TestRunUnderRunc(t *testing.T) {
	runc := requireRunc(t)
	t.Cleanup(removeParentCgroups)
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	busyboxRootfs(t, rootfs)
	root, err := ResolveUser(rootfs, "")
	if err != nil {
		t.Fatal(err)
	}
	alice, err := ResolveUser(rootfs, "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		script string
		opts   []SpecOpt
		want   []string // lines the output has
	}{{
		name:   "default",
		script: "id; cat /proc/self/status | grep Seccomp",
		opts:   []SpecOpt{WithUser(root)},
		want:   []string{"uid=0(root) gid=0(root) groups=0(root),10(wheel)", "Seccomp:\t2"},
	}, {
		name:   "user, hostname, env, read-only rootfs, oom score",
		script: "id; hostname; echo $GREETING; cat /proc/self/oom_score_adj; echo x > /f 2>/dev/null || echo read-only",
		opts: []SpecOpt{WithUser(alice), WithHostname("oci-test"), WithEnv([]string{"GREETING=hi"}),
			WithRootfs(rootfs, true), WithOOMScoreAdj(-500)},
		want: []string{
			// The kernel sorts the supplementary groups.
			"uid=1000(alice) gid=1000(alice) groups=10(wheel),50(staff),999(docker),1000(alice)",
			"oci-test", "hi", fmt.Sprint(expectedOOMScore(t, -500)), "read-only",
		},
	}, {
		name:   "privileged on the host network",
		script: "grep Seccomp: /proc/self/status; grep CapEff /proc/self/status",
		opts:   []SpecOpt{WithPrivileged(), WithHostNamespace(specs.NetworkNamespace)},
		want:   []string{"Seccomp:\t0", "CapEff:\t" + hostCapBnd(t)},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("oci-test-%d-%d", os.Getpid(), time.Now().UnixNano())
			opts := append([]SpecOpt{WithRootfs(rootfs, false), WithProcessArgs("sh", "-c", tc.script)}, tc.opts...)
			s, err := GenerateSpec(context.Background(), testNamespace, id, opts...)
			if err != nil {
				t.Fatal(err)
			}
			out := runSpec(t, runc, id, s)
			lines := strings.Split(out, "\n")
			for _, w := range tc.want {
				if !slices.Contains(lines, w) {
					t.Errorf("output has no line %q:\n%s", w, out)
				}
			}
		})
	}
}

// testNamespace is the berth namespace of the test containers, the
// parent of their cgroups.
const testNamespace = "berth-oci-test"

// removeParentCgroups removes the cgroups runc made for the namespace
// and left behind once empty; one still in use stays (rmdir refuses).
func removeParentCgroups() {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + testNamespace)
	for _, d := range append(dirs, "/sys/fs/cgroup/"+testNamespace) {
		_ = os.Remove(d)
	}
}

// expectedOOMScore is the score WithOOMScoreAdj should give adj on this
// host: adj with CAP_SYS_RESOURCE, else at least this process's score.
func expectedOOMScore(t *testing.T, adj int) int {
	t.Helper()
	caps, err := readBoundingCaps()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range caps {
		if c == "CAP_SYS_RESOURCE" {
			return adj
		}
	}
	cur, err := readOOMScoreAdj()
	if err != nil {
		t.Fatal(err)
	}
	return max(adj, cur)
}

// hostCapBnd is this process's CapBnd as /proc shows it, limited to the
// capabilities this package knows.
func hostCapBnd(t *testing.T) string {
	t.Helper()
	caps, err := readBoundingCaps()
	if err != nil {
		t.Fatal(err)
	}
	var mask uint64
	for i, name := range capabilityNames {
		for _, c := range caps {
			if c == name {
				mask |= 1 << i
			}
		}
	}
	return fmt.Sprintf("%016x", mask)
}
