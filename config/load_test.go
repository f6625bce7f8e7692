package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, doc string
		want      string // message after "config PATH:"
	}{
		{"malformed table header", "version = 2\n[grpc\naddress = 1\n", "2:6: expected character ]"},
		{"malformed value", "version = 2\nroot = \n", "2:8: "},
		{"wrong type", "version = 2\n[grpc]\n  address = 1\n", `3:3: key "grpc.address": expected string, got integer`},
		{"wrong type float for int", "[grpc]\nuid = 1.5\n", `2:1: key "grpc.uid": expected integer, got float`},
		{"table for string", "root = {a = 1}\n", `1:1: key "root": expected string, got table`},
		{"array for string", "[debug]\nlevel = ['info']\n", `2:1: key "debug.level": expected string, got array`},
		{"string for array", "disabled_plugins = 'a.b'\n", `1:1: key "disabled_plugins": expected array, got string`},
		{"array element", "version = 2\ndisabled_plugins = ['a.b', 1]\n", `2:28: key "disabled_plugins[1]": expected string, got integer`},
		{"version type", "version = '2'\n", `1:1: key "version": expected integer, got string`},
		{"version too new", "version = 4\n", `1:1: key "version": unsupported version 4, berth reads versions 1, 2 and 3`},
		{"version negative", "version = -1\n", `1:1: key "version": unsupported version -1, berth reads versions 1, 2 and 3`},
		{"relative root", "version = 2\nroot = 'var/lib/berth'\n", `2:1: key "root": must be an absolute path, got "var/lib/berth"`},
		{"relative state", "state = 'run'\n", `1:1: key "state": must be an absolute path, got "run"`},
		{"bad level", "[debug]\n  level = 'loud'\n", `2:3: key "debug.level": unknown log level "loud", want one of trace, debug, info, warn, warning, error, fatal, panic`},
		{"bad format", "[debug]\n  format = 'xml'\n", `2:3: key "debug.format": unknown log format "xml", want text or json`},
		{"short disabled plugin in v2", "version = 2\ndisabled_plugins = ['cri']\n", `2:21: key "disabled_plugins[0]": plugin "cri" is not a full plugin ID like io.containerd.snapshotter.v1.overlayfs`},
		{"plugin section not a table", "version = 2\n[plugins]\n  'a.b' = 1\n", `3:3: key "plugins.'a.b'": expected table, got integer`},
		{"duplicate key", "oom_score = 1\noom_score = 2\n", `2:1: key "oom_score": already defined as an integer at line 1`},
		{"duplicate table", "[grpc]\n[ttrpc]\n[grpc]\n", `3:2: key "grpc": already defined as a table at line 1`},
		{"table over value", "version = 2\n[version]\n", `2:2: key "version": already defined as an integer at line 1`},
		{"dotted over header", "[a]\nb.c = 1\n[a.b]\n", `3:4: key "a.b": already defined as a table by dotted keys at line 2`},
		{"extend inline table", "a = {b = 1}\n[a.c]\n", `2:2: key "a": already defined as an inline table at line 1`},
		{"array table over array", "a = [1]\n[[a]]\n", `2:3: key "a": already defined as an array at line 1`},
		{"proxy plugin wrong type", "[proxy_plugins.snap]\n  address = 5\n", `2:3: key "proxy_plugins.snap.address": expected string, got integer`},
		{"timeouts wrong type", "[timeouts]\n  'io.containerd.timeout.shim.load' = 5\n", `2:3: key "timeouts.'io.containerd.timeout.shim.load'": expected string, got integer`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.doc)
			c, ws, err := Load(path)
			if err == nil {
				t.Fatalf("Load = %+v, %v, want error", c, ws)
			}
			prefix := "config " + path + ":"
			got := err.Error()
			if !strings.HasPrefix(got, prefix) || !strings.HasPrefix(got[len(prefix):], tt.want) {
				t.Errorf("err = %s\nwant   %s%s", got, prefix, tt.want)
			}
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("err %v is not an invalid argument", err)
			}
		})
	}
}

func TestLoadWarnings(t *testing.T) {
	doc := `version = 2
oom_score = -999
bogus = 1
temp = ""
[grpc]
  address = "/run/x.sock"
  tcp_address = "0.0.0.0:1"
  typo_addr = "x"
[debug]
  uid = 0
  gid = 5
[newsection]
  a = 1
[ttrpc]
  extra.dotted = 1
[timeouts]
  "x" = "1s"
[proxy_plugins.snap]
  type = "snapshot"
  address = "/run/snap.sock"
  capabilities = ["rebase"]
[metrics]
  address = ""
  grpc_histogram = true
[cgroup]
  path = "/berth"
[stream_processors]
`
	path := writeConfig(t, doc)
	c, ws := mustLoad(t, path)
	w := func(line int, key string) Warning { return Warning{File: path, Line: line, Key: key, Msg: msgIgnored} }
	wantWarnings(t, ws, []Warning{
		w(2, "oom_score"), w(3, "bogus"), w(7, "grpc.tcp_address"), w(8, "grpc.typo_addr"),
		w(11, "debug.gid"), w(12, "newsection"), w(15, "ttrpc.extra"), w(16, "timeouts"),
		w(21, "proxy_plugins.snap.capabilities"), w(24, "metrics.grpc_histogram"), w(26, "cgroup.path"),
	})
	want := map[string]ProxyPlugin{"snap": {Type: "snapshot", Address: "/run/snap.sock"}}
	if c.GRPC.Address != "/run/x.sock" || !reflect.DeepEqual(c.ProxyPlugins, want) {
		t.Errorf("GRPC %+v, ProxyPlugins %+v", c.GRPC, c.ProxyPlugins)
	}
	wantStr := "config " + path + `:2: key "oom_score": not implemented by berth, ignored`
	if got := ws[0].String(); got != wantStr {
		t.Errorf("String() = %s, want %s", got, wantStr)
	}
}

func TestLoadValues(t *testing.T) {
	doc := `version = 3
root = "/srv/berth"
state = "/run/b"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs"]
required_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "/run/b/b.sock"
  uid = 10
  gid = 20
  max_recv_message_size = 1024
[ttrpc]
  uid = 11
[debug]
  level = "WARN"
  address = "/run/b/debug.sock"
`
	c, ws := mustLoad(t, writeConfig(t, doc))
	wantWarnings(t, ws, nil)
	got := []any{c.Version, c.Root, c.State, c.DisabledPlugins, c.RequiredPlugins, c.GRPC, c.TTRPC, c.Debug, c.TTRPCAddress()}
	want := []any{3, "/srv/berth", "/run/b", []string{"io.containerd.snapshotter.v1.btrfs"}, []string{"io.containerd.grpc.v1.cri"},
		GRPC{Address: "/run/b/b.sock", UID: 10, GID: 20, MaxRecvMessageSize: 1024, MaxSendMessageSize: 16 << 20},
		TTRPC{UID: 11}, Debug{Level: "warn", Address: "/run/b/debug.sock"}, "/run/b/b.sock.ttrpc"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
}

func TestLoadVersions(t *testing.T) {
	for _, tt := range []struct {
		doc  string
		want int
	}{{"", 1}, {"version = 0", 1}, {"version = 1", 1}, {"version = 2", 2}, {"version = 3", 3}} {
		c, _ := mustLoad(t, writeConfig(t, tt.doc))
		if c.Version != tt.want {
			t.Errorf("%q: Version = %d, want %d", tt.doc, c.Version, tt.want)
		}
	}
}

// writeFiles creates files under a fresh directory and returns it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadImports(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"config.toml": `version = 2
imports = ["conf.d/*.toml", "extra.toml"]
root = "/var/lib/a"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs"]
[debug]
  level = "debug"
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
  snapshotter = "overlayfs"
[proxy_plugins.p]
  type = "snapshot"
  address = "/run/p.sock"
`,
		"conf.d/10-a.toml": `version = 2
root = "/var/lib/b"
[debug]
  level = ""
  format = "json"
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "native"
  unknown_here = 1
[proxy_plugins.p]
  type = "content"
  address = "/run/q.sock"
`,
		"conf.d/20-b.toml": "version = 1\ndisabled_plugins = ['zfs', 'io.containerd.snapshotter.v1.aufs']\noom_score = 5\n",
		"extra.toml":       "version = 2\nimports = ['config.toml', 'conf.d/10-a.toml']\n[grpc]\nuid = 7\n",
	})
	root := filepath.Join(dir, "config.toml")
	c, ws := mustLoad(t, root)

	a, b := filepath.Join(dir, "conf.d/10-a.toml"), filepath.Join(dir, "conf.d/20-b.toml")
	wantWarnings(t, ws, []Warning{{File: b, Line: 3, Key: "oom_score", Msg: msgIgnored}})
	if want := []string{a, b, filepath.Join(dir, "extra.toml")}; !reflect.DeepEqual(c.Imports, want) {
		t.Errorf("Imports = %v, want %v", c.Imports, want)
	}
	got := []any{c.Root, c.Debug, c.GRPC.UID, c.DisabledPlugins, c.ProxyPlugins["p"]}
	want := []any{"/var/lib/b", Debug{Level: "debug", Format: "json"}, 7,
		[]string{"io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.zfs"},
		ProxyPlugin{Type: "content", Address: "/run/q.sock"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}

	var cri struct {
		Containerd struct {
			DefaultRuntimeName string `toml:"default_runtime_name"`
			Snapshotter        string `toml:"snapshotter"`
		} `toml:"containerd"`
	}
	ws, err := c.DecodePlugin("io.containerd.grpc.v1.cri", &cri)
	if err != nil || cri.Containerd.DefaultRuntimeName != "runc" || cri.Containerd.Snapshotter != "native" {
		t.Errorf("merged section: %+v, %v", cri, err)
	}
	wantWarnings(t, ws, []Warning{{File: a, Line: 8, Key: "plugins.'io.containerd.grpc.v1.cri'.containerd.unknown_here", Msg: msgIgnored}})
}

func TestLoadImportErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string // substring of the error, with DIR for the directory
	}{
		{"missing file", map[string]string{"config.toml": "version = 2\nimports = ['nope.toml']\n"},
			`config DIR/config.toml:2:12: key "imports[0]": cannot import: stat DIR/nope.toml: no such file or directory`},
		{"newer version", map[string]string{"config.toml": "version = 2\nimports = ['a.toml']\n", "a.toml": "version = 3\n"},
			`config DIR/a.toml:1:1: key "version": imported file has version 3, newer than version 2 of DIR/config.toml`},
		{"error inside import", map[string]string{"config.toml": "imports = ['a.toml']\n", "a.toml": "[grpc]\ngid = 'x'\n"},
			`config DIR/a.toml:2:1: key "grpc.gid": expected integer, got string`},
		{"directory", map[string]string{"config.toml": "imports = ['d']\n", "d/x": ""},
			`config DIR/config.toml:1:12: key "imports[0]": cannot import: DIR/d: not a regular file`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			_, _, err := Load(filepath.Join(dir, "config.toml"))
			want := strings.ReplaceAll(tt.want, "DIR", dir)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v\nwant   %s", err, want)
			}
		})
	}
}

func TestLoadImportOlderVersionWarns(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"config.toml": "version = 3\nimports = ['old.toml']\n",
		"old.toml":    "# drop-in\nversion = 2\n[plugins.'io.containerd.grpc.v1.cri']\nsandbox_image = 'x'\n",
	})
	_, ws := mustLoad(t, filepath.Join(dir, "config.toml"))
	if len(ws) != 1 || ws[0].File != filepath.Join(dir, "old.toml") || ws[0].Line != 2 || ws[0].Key != "version" {
		t.Errorf("warnings = %v", ws)
	}
}

func TestLoadUnreadable(t *testing.T) {
	_, _, err := Load(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Load(dir) err = %v", err)
	}
}
