package daemon

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

func TestTOML(t *testing.T) {
	c := Config{Dir: "/tmp/x", Disabled: []string{"io.containerd.grpc.v1.cri"}, Extra: ContainerdOpt("/tmp/x") + "\n"}
	var cfg struct {
		Version  int      `toml:"version"`
		Disabled []string `toml:"disabled_plugins"`
		GRPC     struct{ Address string }
		Plugins  map[string]map[string]any
	}
	if err := toml.Unmarshal([]byte(c.TOML()), &cfg); err != nil {
		t.Fatalf("%v in:\n%s", err, c.TOML())
	}
	if cfg.Version != 2 || cfg.GRPC.Address != "/tmp/x/d.sock" || !slices.Equal(cfg.Disabled, c.Disabled) ||
		cfg.Plugins["io.containerd.internal.v1.opt"]["path"] != "/tmp/x/opt" {
		t.Errorf("decoded %+v from:\n%s", cfg, c.TOML())
	}
	if plain := (Config{Dir: "/d"}).TOML(); strings.Contains(plain, "disabled_plugins") || strings.Contains(plain, "plugins.") {
		t.Errorf("config without options:\n%s", plain)
	}
}

func TestMountsUnder(t *testing.T) {
	info := "36 35 98:0 / /mnt/a rw - ext4 /dev/x rw\n" +
		"37 36 0:1 / /mnt/a/b\\040c rw - overlay overlay rw\n" +
		"38 36 0:2 / /mnt/a/b\\040c/d/e rw - tmpfs tmpfs rw\n" +
		"39 36 0:3 / /mnt/ab rw - tmpfs tmpfs rw\n"
	got := mountsUnder(info, "/mnt/a")
	want := []string{"/mnt/a/b c/d/e", "/mnt/a/b c", "/mnt/a"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestLifecycle starts a stand-in daemon (sh listening on nothing: it
// never gets ready) and checks that Ready reports its exit and Stop of a
// running one succeeds.
func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "fake")
	// Exits at once: Ready must say so, with the log's path.
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho bad flag >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := StartReady(context.Background(), Config{Name: "fake", Binary: fake, Dir: filepath.Join(dir, "a")}, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "daemon.log") {
		t.Errorf("StartReady of a daemon that exits: %v", err)
	}
	// Runs until signalled: Stop must succeed.
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := Start(Config{Name: "fake", Binary: fake, Dir: filepath.Join(dir, "b")})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(5 * time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if err := RemoveTree(d.Dir); err != nil {
		t.Error(err)
	}
}
