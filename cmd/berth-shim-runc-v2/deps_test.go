package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// heavyImports must stay out of the shim. Nearly every page of the binary
// ends up resident in every shim process (the kernel maps the file pages
// 64 KiB around each page fault), so a shim's memory follows the size of
// its binary; these packages made it 1.7 MiB bigger, for nothing the shim
// uses: the gRPC stubs of task API v3 (the shim serves v3 with v2's
// messages) bring gRPC with net/http and crypto/tls, and containerd's
// cgroup1 library brings systemd's D-Bus client (package cgroupv1 reads
// the metrics instead).
var heavyImports = []string{
	"github.com/containerd/containerd/api/runtime/task/v3",
	"google.golang.org/grpc",
	"net/http",
	"crypto/tls",
	"github.com/containerd/cgroups/v3/cgroup1",
	"github.com/godbus/dbus/v5",
}

func TestNoHeavyImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, pkg := range heavyImports {
		if slices.Contains(deps, pkg) {
			t.Errorf("the shim imports %s: %s", pkg, importChain(t, pkg))
		}
	}
}

// importChain names the shim's packages that import pkg directly.
func importChain(t *testing.T, pkg string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}:{{join .Imports " "}}`, ".").Output()
	if err != nil {
		return "?"
	}
	var by []string
	for line := range strings.Lines(string(out)) {
		importer, imports, _ := strings.Cut(strings.TrimSpace(line), ":")
		if slices.Contains(strings.Fields(imports), pkg) {
			by = append(by, importer)
		}
	}
	return "imported by " + strings.Join(by, ", ")
}
