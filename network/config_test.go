package network

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestWithDefaults(t *testing.T) {
	got := Config{}.WithDefaults()
	want := Config{ConfDir: "/etc/berth/cni/net.d", BinDirs: []string{"/usr/lib/cni", "/opt/cni/bin"}, StateDir: "/var/lib/berth-cli/networks"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Config{}.WithDefaults() (-want +got):\n%s", d)
	}
	got.BinDirs[0] = "changed"
	if DefaultBinDirs[0] != "/usr/lib/cni" {
		t.Error("WithDefaults shares DefaultBinDirs with its result")
	}
	if _, err := New(Config{StateDir: "relative"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("New with a relative StateDir: %v, want InvalidArgument", err)
	}
}

func TestEnsureDefault(t *testing.T) {
	m := newFileManager(t)
	if err := m.EnsureDefault(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(m.cfg.ConfDir, "10-berth.conflist")
	list, err := libcni.NetworkConfFromFile(path)
	if err != nil {
		t.Fatalf("libcni cannot load the default network: %v", err)
	}
	var types []string
	for _, p := range list.Plugins {
		types = append(types, p.Network.Type)
	}
	if list.Name != "berth" || list.CNIVersion != "1.0.0" || !slices.Equal(types, []string{"bridge", "portmap", "firewall", "tuning"}) {
		t.Errorf("default network = %s %s %v", list.Name, list.CNIVersion, types)
	}
	var bridge bridgePlugin
	if err := json.Unmarshal(list.Plugins[0].Bytes, &bridge); err != nil {
		t.Fatal(err)
	}
	want := bridgePlugin{Type: "bridge", Bridge: "berth0", IsGateway: true, IPMasq: true, HairpinMode: true, IPAM: hostLocal{
		Type:    "host-local",
		Ranges:  [][]hostLocalNet{{{Subnet: "10.89.0.0/16", Gateway: "10.89.0.1"}}},
		Routes:  []route{{Dst: "0.0.0.0/0"}},
		DataDir: filepath.Join(m.cfg.StateDir, "_ipam"),
	}}
	if d := cmp.Diff(want, bridge); d != "" {
		t.Errorf("bridge plugin (-want +got):\n%s", d)
	}
	if !strings.Contains(string(list.Plugins[1].Bytes), `"capabilities":{"portMappings":true}`) {
		t.Errorf("portmap plugin = %s, want the portMappings capability", list.Plugins[1].Bytes)
	}
}

// The machine-wide ConfDir keeps its leases in the machine-wide state
// directory, whichever StateDir writes it; other ConfDirs in theirs.
func TestDefaultIPAMDir(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{StateDir: "/tmp/data/networks"}.WithDefaults(), "/var/lib/berth-cli/networks/_ipam"},
		{Config{ConfDir: "/etc/berth/cni/net.d/", StateDir: "/x"}, "/var/lib/berth-cli/networks/_ipam"},
		{Config{ConfDir: "/tmp/conf", StateDir: "/tmp/state"}, "/tmp/state/_ipam"},
	} {
		b, err := tc.cfg.defaultConflist(defaultNetwork{bridge: "b", subnet: netip.MustParsePrefix("10.0.0.0/24")})
		if err != nil || !strings.Contains(string(b), `"dataDir": "`+tc.want+`"`) {
			t.Errorf("conflist of %+v = %s, %v; want dataDir %s", tc.cfg, b, err, tc.want)
		}
	}
}

// An administrator's conflist named berth, whatever its file, is kept.
func TestEnsureDefaultKeepsExisting(t *testing.T) {
	m := newFileManager(t)
	mine := []byte(`{"cniVersion":"1.0.0","name":"berth","plugins":[{"type":"bridge","bridge":"mine"}]}`)
	if err := os.MkdirAll(m.cfg.ConfDir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(m.cfg.ConfDir, "50-custom.conflist")
	if err := os.WriteFile(path, mine, 0o644); err != nil {
		t.Fatal(err)
	}
	// A broken file of another network does not hide it.
	if err := os.WriteFile(filepath.Join(m.cfg.ConfDir, "00-broken.conflist"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.EnsureDefault(WithBridge("other")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != string(mine) {
		t.Errorf("EnsureDefault changed %s to %s", path, b)
	}
	if _, err := os.Stat(filepath.Join(m.cfg.ConfDir, "10-berth.conflist")); err == nil {
		t.Error("EnsureDefault wrote a second berth network")
	}
}

func TestEnsureDefaultOptions(t *testing.T) {
	m := newFileManager(t)
	if err := m.EnsureDefault(WithSubnet(netip.MustParsePrefix("10.1.2.0/24")), WithBridge("br-test")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(m.cfg.ConfDir, "10-berth.conflist"))
	if err != nil || !strings.Contains(string(b), `"bridge": "br-test"`) || !strings.Contains(string(b), `"gateway": "10.1.2.1"`) {
		t.Errorf("conflist = %s, %v", b, err)
	}
	for _, opt := range []DefaultOption{
		WithBridge("a-very-long-bridge"), WithBridge(""), WithBridge("a/b"),
		WithSubnet(netip.MustParsePrefix("10.1.2.3/24")), WithSubnet(netip.MustParsePrefix("fd00::/64")),
		WithSubnet(netip.MustParsePrefix("10.1.2.0/31")),
	} {
		if err := newFileManager(t).EnsureDefault(opt); !errdefs.IsInvalidArgument(err) {
			t.Errorf("EnsureDefault with a bad option: %v, want InvalidArgument", err)
		}
	}
}

func TestCNIContainerID(t *testing.T) {
	got, err := CNIContainerID("default", "web")
	if err != nil || got != "default--web" {
		t.Errorf(`CNIContainerID("default", "web") = %q, %v`, got, err)
	}
	// Separators inside names cannot make two pairs collide.
	a, _ := CNIContainerID("a-b", "c")
	b, _ := CNIContainerID("a", "b-c")
	if a == b {
		t.Errorf("%q collides", a)
	}
	for _, bad := range [][2]string{{"", "x"}, {"x", ""}, {"a--b", "c"}, {"a", "-c"}, {"a", "../c"}} {
		if _, err := CNIContainerID(bad[0], bad[1]); !errdefs.IsInvalidArgument(err) {
			t.Errorf("CNIContainerID(%q, %q): %v, want InvalidArgument", bad[0], bad[1], err)
		}
	}
}

func TestHooks(t *testing.T) {
	h := Hooks("/usr/bin/berth", Config{ConfDir: "/c", BinDirs: []string{"/b1", "/b2"}, StateDir: "/s"})
	if len(h.CreateRuntime) != 1 || len(h.Poststop) != 1 || len(h.Prestart)+len(h.CreateContainer)+len(h.StartContainer)+len(h.Poststart) != 0 {
		t.Fatalf("hooks = %+v, want one createRuntime and one poststop", h)
	}
	for phase, hook := range map[string]specs.Hook{"createRuntime": h.CreateRuntime[0], "postStop": h.Poststop[0]} {
		want := []string{"/usr/bin/berth", "internal", "oci-hook", phase, "--cni-conf-dir=/c", "--cni-bin-dir=/b1,/b2", "--cni-state-dir=/s"}
		if hook.Path != "/usr/bin/berth" || !slices.Equal(hook.Args, want) {
			t.Errorf("%s hook runs %s %q, want %q", phase, hook.Path, hook.Args, want)
		}
		if hook.Timeout == nil || *hook.Timeout <= 0 || len(hook.Env) != 1 || !strings.HasPrefix(hook.Env[0], "PATH=") {
			t.Errorf("%s hook: timeout %v, env %q; want a timeout and PATH", phase, hook.Timeout, hook.Env)
		}
	}
	// Defaults reach the flags.
	if got := Hooks("/b", Config{}).Poststop[0].Args; !slices.Contains(got, "--cni-bin-dir=/usr/lib/cni,/opt/cni/bin") {
		t.Errorf("default hook args = %q", got)
	}
}

func TestRunHookRejects(t *testing.T) {
	cfg := Config{ConfDir: t.TempDir(), StateDir: t.TempDir()}
	ctx := context.Background()
	for _, tc := range []struct{ phase, state, err string }{
		{"prestart", `{"id":"c"}`, `phase "prestart"`},
		{"createRuntime", `not json`, "decode the OCI state"},
		{"createRuntime", `{"ociVersion":"1.2.1"}`, "no container id"},
		{"createRuntime", `{"id":"c","annotations":{"berth.dev/network":"bridge"}}`, "berth.dev/namespace"},
		{"createRuntime", `{"id":"c","annotations":{"berth.dev/network":"macvlan","berth.dev/namespace":"default"}}`, `network mode "macvlan"`},
		{"createRuntime", `{"id":"c","annotations":{"berth.dev/namespace":"default"}}`, "no pid"},
		{"createRuntime", `{"id":"c","pid":1,"annotations":{"berth.dev/namespace":"default","berth.dev/ports":"[{"}}`, "berth.dev/ports"},
	} {
		err := RunHook(ctx, cfg, tc.phase, strings.NewReader(tc.state))
		if err == nil || !strings.Contains(err.Error(), tc.err) || !errdefs.IsInvalidArgument(err) {
			t.Errorf("RunHook(%s, %s) = %v, want an InvalidArgument error with %q", tc.phase, tc.state, err, tc.err)
		}
	}
	// Host and none networks need nothing; a postStop of a container
	// never attached is nothing to do either.
	for _, state := range []string{
		`{"id":"c","pid":1,"annotations":{"berth.dev/network":"host","berth.dev/namespace":"default"}}`,
		`{"id":"c","status":"stopped","annotations":{"berth.dev/network":"bridge","berth.dev/namespace":"default"}}`,
	} {
		phase := "createRuntime"
		if strings.Contains(state, "stopped") {
			phase = "postStop"
		}
		if err := RunHook(ctx, cfg, phase, strings.NewReader(state)); err != nil {
			t.Errorf("RunHook(%s, %s) = %v", phase, state, err)
		}
	}
}

// newFileManager is a Manager on fresh directories, for the tests that
// touch no network.
func newFileManager(t *testing.T) *Manager {
	t.Helper()
	m, err := New(Config{ConfDir: filepath.Join(t.TempDir(), "net.d"), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return m
}
