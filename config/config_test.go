package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
)

// writeConfig writes content to config.toml in a fresh directory.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustLoad(t *testing.T, path string) (*Config, []Warning) {
	t.Helper()
	c, ws, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	return c, ws
}

func wantWarnings(t *testing.T, got, want []Warning) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("warnings:\n got  %v\n want %v", got, want)
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	got := []any{c.Version, c.Root, c.State, c.GRPC, c.TTRPC, c.Debug, c.TTRPCAddress(), c.Path, c.Missing, len(c.PluginIDs())}
	want := []any{3, "/var/lib/berth", "/run/berth",
		GRPC{Address: "/run/berth/berth.sock", MaxRecvMessageSize: 16 << 20, MaxSendMessageSize: 16 << 20},
		TTRPC{}, Debug{Level: "info"}, "/run/berth/berth.sock.ttrpc", "", false, 0}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Default() = %v, want %v", got, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.toml")
	c, ws := mustLoad(t, path)
	want := Default()
	want.Path, want.Missing = path, true
	if !reflect.DeepEqual(c, want) || len(ws) != 0 {
		t.Errorf("Load(missing) = %+v, %v; want %+v", c, ws, want)
	}
}

func TestLoadContainerd16Default(t *testing.T) {
	path := "testdata/containerd-1.6-default.toml"
	c, ws := mustLoad(t, path)
	wantWarnings(t, ws, []Warning{
		{File: path, Line: 215, Key: "stream_processors", Msg: msgIgnored},
		{File: path, Line: 231, Key: "timeouts", Msg: msgIgnored},
	})
	got := []any{c.Version, c.Root, c.State, c.GRPC, c.TTRPC, c.Debug, c.Missing}
	want := []any{2, "/var/lib/containerd", "/run/containerd",
		GRPC{Address: "/run/containerd/containerd.sock", MaxRecvMessageSize: 16777216, MaxSendMessageSize: 16777216},
		TTRPC{}, Debug{Level: "info"}, false}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if n := len(c.PluginIDs()); n != 16 {
		t.Errorf("PluginIDs() has %d IDs, want 16: %v", n, c.PluginIDs())
	}
}

func TestLoadV3(t *testing.T) {
	path := "testdata/containerd-2-v3.toml"
	c, ws := mustLoad(t, path)
	wantWarnings(t, ws, []Warning{
		{File: path, Line: 140, Key: "timeouts", Msg: msgIgnored},
		{File: path, Line: 147, Key: "stream_processors", Msg: msgIgnored},
	})
	if c.Version != 3 || c.Debug != (Debug{Level: "debug", Format: "json"}) {
		t.Errorf("Version, Debug = %d, %+v", c.Version, c.Debug)
	}
	var images struct {
		Snapshotter string `toml:"snapshotter"`
		Registry    struct {
			ConfigPath string `toml:"config_path"`
		} `toml:"registry"`
		PinnedImages map[string]string `toml:"pinned_images"`
	}
	ws, err := c.DecodePlugin("io.containerd.cri.v1.images", &images)
	if err != nil {
		t.Fatal(err)
	}
	// One warning per key this small struct does not declare.
	if len(ws) != 7 || ws[6].Line != 56 || ws[6].Key != "plugins.'io.containerd.cri.v1.images'.image_decryption" {
		t.Errorf("got %d warnings, want 7 ending with image_decryption on line 56: %v", len(ws), ws)
	}
	if images.Snapshotter != "overlayfs" || images.Registry.ConfigPath != "/etc/containerd/certs.d" ||
		images.PinnedImages["sandbox"] != "registry.k8s.io/pause:3.10" {
		t.Errorf("images = %+v", images)
	}
	for _, id := range []string{"io.containerd.cri.v1.runtime", "io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images"} {
		if !c.HasPlugin(id) {
			t.Errorf("HasPlugin(%q) = false", id)
		}
	}
}

// CRI-shaped structs as a plugin would declare them.
type criRuntime struct {
	RuntimeType string         `toml:"runtime_type"`
	Options     map[string]any `toml:"options"`
}

type criConfig struct {
	Containerd struct {
		DefaultRuntimeName string                `toml:"default_runtime_name"`
		Runtimes           map[string]criRuntime `toml:"runtimes"`
	} `toml:"containerd"`
}

func TestKubernetesSeed(t *testing.T) {
	c, ws := mustLoad(t, "testdata/kubernetes-seed.toml")
	wantWarnings(t, ws, nil)
	if got := c.PluginIDs(); !reflect.DeepEqual(got, []string{"io.containerd.grpc.v1.cri"}) {
		t.Fatalf("PluginIDs() = %v", got)
	}
	var cri criConfig
	cri.Containerd.Runtimes = map[string]criRuntime{"runc": {RuntimeType: "default"}}
	ws, err := c.DecodePlugin("io.containerd.grpc.v1.cri", &cri)
	if err != nil || len(ws) != 0 {
		t.Fatalf("DecodePlugin: %v, %v", ws, err)
	}
	want := map[string]criRuntime{
		"runc": {RuntimeType: "io.containerd.runc.v2", Options: map[string]any{"SystemdCgroup": false}},
		"runsc": {RuntimeType: "io.containerd.runsc.v1", Options: map[string]any{
			"TypeUrl": "io.containerd.runsc.v1.options", "ConfigPath": "/etc/containerd/runsc.toml"}},
		"kata": {RuntimeType: "io.containerd.kata.v2"},
	}
	if cri.Containerd.DefaultRuntimeName != "runc" || !reflect.DeepEqual(cri.Containerd.Runtimes, want) {
		t.Errorf("decoded %+v", cri)
	}
	if ws := c.UndecodedPlugins(); len(ws) != 0 {
		t.Errorf("UndecodedPlugins() = %v", ws)
	}
}

func TestDecodePluginWarnings(t *testing.T) {
	c, _ := mustLoad(t, "testdata/kubernetes-seed.toml")
	var cri struct {
		Containerd struct {
			Runtimes map[string]struct {
				RuntimeType string `toml:"runtime_type"`
			} `toml:"runtimes"`
		} `toml:"containerd"`
	}
	ws, err := c.DecodePlugin("io.containerd.grpc.v1.cri", &cri)
	if err != nil {
		t.Fatal(err)
	}
	const file, p = "testdata/kubernetes-seed.toml", "plugins.'io.containerd.grpc.v1.cri'.containerd."
	wantWarnings(t, ws, []Warning{
		{File: file, Line: 3, Key: p + "default_runtime_name", Msg: msgIgnored},
		{File: file, Line: 6, Key: p + "runtimes.runc.options", Msg: msgIgnored},
		{File: file, Line: 10, Key: p + "runtimes.runsc.options", Msg: msgIgnored},
	})
	want := `config testdata/kubernetes-seed.toml:3: key "plugins.'io.containerd.grpc.v1.cri'.containerd.default_runtime_name": not implemented by berth, ignored`
	if got := ws[0].String(); got != want {
		t.Errorf("String() = %s\nwant       %s", got, want)
	}
}

func TestDecodePluginErrors(t *testing.T) {
	path := writeConfig(t, "version = 2\n[plugins.\"x.y\"]\n  n = \"a\"\n  s = 'ok'\n")
	c, _ := mustLoad(t, path)

	var v struct{ N int }
	_, err := c.DecodePlugin("x.y", &v)
	want := `config ` + path + `:3:3: key "plugins.'x.y'.n": expected integer, got string`
	if err == nil || err.Error() != want || !errdefs.IsInvalidArgument(err) {
		t.Errorf("err = %v\nwant  %s", err, want)
	}

	if _, err := c.DecodePlugin("x.y", v); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("non-pointer target: err = %v", err)
	}

	untouched := struct{ S string }{S: "default"}
	if ws, err := c.DecodePlugin("absent.plugin", &untouched); err != nil || ws != nil || untouched.S != "default" {
		t.Errorf("absent section: %v %v %+v", ws, err, untouched)
	}
}

func TestUndecodedPlugins(t *testing.T) {
	path := writeConfig(t, "version = 2\n[plugins.\"a.b\"]\nx = 1\n[plugins.\"c.d\"]\ny = 2\n")
	c, _ := mustLoad(t, path)
	var v struct{ X int }
	if _, err := c.DecodePlugin("a.b", &v); err != nil || v.X != 1 {
		t.Fatalf("DecodePlugin: %v %+v", err, v)
	}
	wantWarnings(t, c.UndecodedPlugins(), []Warning{{File: path, Line: 4, Key: "plugins.'c.d'", Msg: msgIgnored}})
}

func TestLoadV1(t *testing.T) {
	path := "testdata/v1.toml"
	c, ws := mustLoad(t, path)
	wantWarnings(t, ws, []Warning{{File: path, Line: 13, Key: "plugins.mystery",
		Msg: `version 1 plugin name "mystery" is ambiguous, read as "io.containerd.grpc.v1.mystery"`}})
	wantIDs := []string{"io.containerd.grpc.v1.cri", "io.containerd.grpc.v1.mystery", "io.containerd.runtime.v1.linux"}
	if c.Version != 1 || !reflect.DeepEqual(c.PluginIDs(), wantIDs) {
		t.Errorf("Version %d, PluginIDs %v", c.Version, c.PluginIDs())
	}
	wantDisabled := []string{"io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.zfs"}
	if !reflect.DeepEqual(c.DisabledPlugins, wantDisabled) {
		t.Errorf("DisabledPlugins = %v", c.DisabledPlugins)
	}
	var cri struct {
		Containerd struct {
			Snapshotter string `toml:"snapshotter"`
		} `toml:"containerd"`
	}
	ws, err := c.DecodePlugin("io.containerd.grpc.v1.cri", &cri)
	if err != nil || cri.Containerd.Snapshotter != "overlayfs" {
		t.Fatalf("DecodePlugin: %v %+v", err, cri)
	}
	wantWarnings(t, ws, []Warning{{File: path, Line: 6, Key: "plugins.cri.sandbox_image", Msg: msgIgnored}})
}

func TestDecodePluginConcurrent(t *testing.T) {
	c, _ := mustLoad(t, "testdata/kubernetes-seed.toml")
	done := make(chan error)
	for range 8 {
		go func() {
			var cri criConfig
			_, err := c.DecodePlugin("io.containerd.grpc.v1.cri", &cri)
			_ = c.UndecodedPlugins()
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
