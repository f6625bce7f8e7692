// Package integration runs a real berthd on a temporary root and drives it
// with Debian's containerd 1.6 `ctr`, plus a small gRPC client where ctr
// has no flag for what is tested (leases on requests, event topics ctr 1.6
// cannot decode). The tests need root and `ctr` in PATH.
//
// TestMain builds cmd/berthd once, or uses the binary named by $BERTHD.
package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

var (
	// berthdPath is the berthd binary under test.
	berthdPath string
	// builtHere is true when TestMain built berthdPath from this tree, so
	// its version is the version package's.
	builtHere bool
	// ctrPath is Debian's ctr, or "" with ctrErr set.
	ctrPath string
	ctrErr  error
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

// scratchDir holds the binaries the tests build; TestMain removes it.
var scratchDir string

func runTests(m *testing.M) int {
	ctrPath, ctrErr = exec.LookPath("ctr")
	dir, err := os.MkdirTemp("", "berthd-build-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The binaries the tests build (berthd unless $BERTHD, the shim, the
	// CLI) live here and go with it.
	defer os.RemoveAll(dir)
	scratchDir = dir
	if p := os.Getenv("BERTHD"); p != "" {
		berthdPath = p
		return m.Run()
	}
	berthdPath, builtHere = filepath.Join(dir, "berthd"), true
	cmd := exec.Command("go", "build", "-tags", "grpcnotrace", "-o", berthdPath, "github.com/berth-dev/berth/cmd/berthd")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build berthd: %v\n", err)
		return 1
	}
	return m.Run()
}

// requirements fails the test when it cannot run here: it needs root and
// Debian's ctr. It never skips: a missing peer is a broken test setup.
func requirements(t *testing.T) {
	t.Helper()
	if ctrErr != nil {
		t.Fatalf("ctr not found in PATH (%v): install Debian's containerd package (make test does)", ctrErr)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("integration tests run berthd and ctr as root; running as uid %d", os.Geteuid())
	}
}
