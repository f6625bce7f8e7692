package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

func TestComparableDisabled(t *testing.T) {
	containerd := []string{
		"io.containerd.content.v1.content", "io.containerd.snapshotter.v1.native", "io.containerd.snapshotter.v1.overlayfs",
		"io.containerd.metadata.v1.bolt", "io.containerd.service.v1.content-service", "io.containerd.service.v1.tasks-service",
		"io.containerd.grpc.v1.content", "io.containerd.grpc.v1.tasks", "io.containerd.grpc.v1.cri",
	}
	for _, tc := range []struct {
		name   string
		berthd []string
		want   []string
	}{
		{"native kept when berthd has no snapshotter",
			[]string{"io.containerd.content.v1.content", "io.containerd.metadata.v1.bolt", "io.containerd.grpc.v1.content", "io.containerd.lease.v1.manager"},
			[]string{"io.containerd.grpc.v1.cri", "io.containerd.grpc.v1.tasks", "io.containerd.service.v1.tasks-service", "io.containerd.snapshotter.v1.overlayfs"}},
		{"berthd's snapshotter replaces native",
			[]string{"io.containerd.content.v1.content", "io.containerd.metadata.v1.bolt", "io.containerd.snapshotter.v1.overlayfs"},
			[]string{"io.containerd.grpc.v1.content", "io.containerd.grpc.v1.cri", "io.containerd.grpc.v1.tasks",
				"io.containerd.service.v1.content-service", "io.containerd.service.v1.tasks-service", "io.containerd.snapshotter.v1.native"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := comparableDisabled(tc.berthd, containerd); !slices.Equal(got, tc.want) {
				t.Errorf("got %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestDaemonConfig(t *testing.T) {
	tg := targets("berthd", "containerd")[2]
	tg.Disabled = []string{"io.containerd.grpc.v1.cri"}
	var cfg struct {
		Disabled []string `toml:"disabled_plugins"`
		Plugins  map[string]map[string]any
	}
	c := tg.daemon("/tmp/x")
	if err := toml.Unmarshal([]byte(c.TOML()), &cfg); err != nil {
		t.Fatalf("%v in:\n%s", err, c.TOML())
	}
	if c.Socket() != "/tmp/x/d.sock" || !slices.Equal(cfg.Disabled, tg.Disabled) ||
		cfg.Plugins["io.containerd.internal.v1.opt"]["path"] != "/tmp/x/opt" {
		t.Errorf("decoded %+v", cfg)
	}
	if b := targets("berthd", "containerd")[0].daemon("/tmp/x").TOML(); strings.Contains(b, "opt") {
		t.Errorf("berthd's config has containerd's opt plugin:\n%s", b)
	}
}

func TestMedian(t *testing.T) {
	rs := []result{{MetaDB: 3}, {MetaDB: 1}, {MetaDB: 2}, {MetaDB: 10}}
	f := func(r result) float64 { return float64(r.MetaDB) }
	if got := median(rs, f); got != 2.5 {
		t.Errorf("median of 4 = %v, want 2.5", got)
	}
	if got := median(rs[:3], f); got != 2 {
		t.Errorf("median of 3 = %v, want 2", got)
	}
}

// TestMeasure runs the whole measurement, workload included, against a
// real berthd ($BERTHD, else built here) and, when root can run it,
// Debian's containerd. It checks that the bench works, not any number.
func TestMeasure(t *testing.T) {
	o := options{ops: 2*len(cycle) + 3, runs: 1} // a partial last cycle too; no settle
	ts := targets(berthdBinary(t), "/usr/bin/containerd")
	if _, err := os.Stat(ts[1].Binary); err != nil || os.Geteuid() != 0 {
		t.Logf("measuring berthd alone: containerd needs root and %s", ts[1].Binary)
		ts = ts[:1]
	}
	results, err := measureAll(context.Background(), ts, t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		if len(r[0].Loaded) == 0 || r[0].Idle.VmRSS == 0 || r[0].AfterOps.VmRSS == 0 || r[0].OpsWall == 0 {
			t.Errorf("%s: incomplete result %+v", ts[i].Name, r[0])
		}
	}
	// The comparable containerd runs without what berthd lacks, and only
	// that: CRI is disabled exactly when berthd does not serve it.
	if len(ts) == 3 {
		berthdCRI := slices.Contains(results[0][0].Loaded, "io.containerd.grpc.v1.cri")
		if len(ts[2].Disabled) == 0 || slices.Contains(ts[2].Disabled, "io.containerd.grpc.v1.cri") == berthdCRI {
			t.Errorf("comparable containerd, berthd serving CRI %v: disabled %v", berthdCRI, ts[2].Disabled)
		}
		for _, p := range ts[2].Disabled {
			if slices.Contains(results[0][0].Loaded, p) {
				t.Errorf("comparable containerd disables %s, which berthd loads", p)
			}
		}
	}
}

func berthdBinary(t *testing.T) string {
	if p := os.Getenv("BERTHD"); p != "" {
		return p
	}
	p := filepath.Join(t.TempDir(), "berthd")
	out, err := exec.Command("go", "build", "-o", p, "github.com/berth-dev/berth/cmd/berthd").CombinedOutput()
	if err != nil {
		t.Fatalf("build berthd: %v\n%s", err, out)
	}
	return p
}
