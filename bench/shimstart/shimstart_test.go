package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseKV(t *testing.T) {
	kv, err := parseKV(strings.NewReader("Name:\tshim\nVmRSS:\t   10340 kB\nRssAnon:\t    2480 kB\nThreads:\t8\n"))
	if err != nil || kv["VmRSS"] != 10340 || kv["RssAnon"] != 2480 || kv["Threads"] != 8 {
		t.Errorf("parseKV = %v, %v", kv, err)
	}
}

func TestMedian(t *testing.T) {
	if got := median([]time.Duration{5, 1, 3}); got != 3 {
		t.Errorf("median odd = %d", got)
	}
	if got := median([]int64{4, 1, 3, 2}); got != 2 {
		t.Errorf("median even = %d", got)
	}
}

// One short measurement of both shims, end to end; it asserts no number.
func TestMeasure(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the shims need root")
	}
	for _, bin := range []string{"runc", "busybox", "/usr/bin/containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("this test needs %s (scripts/setup.sh test installs it): %v", bin, err)
		}
	}
	berth := filepath.Join(t.TempDir(), "berth-shim-runc-v2")
	build := exec.Command("go", "build", "-o", berth, "github.com/berth-dev/berth/cmd/berth-shim-runc-v2")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build berth's shim: %v\n%s", err, out)
	}
	c := config{berth: berth, containerd: "/usr/bin/containerd-shim-runc-v2", starts: 2, idles: 1, settle: 100 * time.Millisecond}
	results, err := measure(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	report(&out, c, results)
	t.Log("\n" + out.String())
	if !strings.Contains(out.String(), "berth / containerd") {
		t.Errorf("report lacks the ratio row:\n%s", out.String())
	}
}
