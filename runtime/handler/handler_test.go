package handler

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/config"
	runcopts "github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
)

// The seed's runc + runsc + kata block, decoded as berthd decodes it.
func TestSeedConfig(t *testing.T) {
	c, _, err := config.Load("../../config/testdata/kubernetes-seed.toml")
	if err != nil {
		t.Fatal(err)
	}
	var sect struct {
		Containerd Config `toml:"containerd"`
	}
	ws, err := c.DecodePlugin("io.containerd.grpc.v1.cri", &sect)
	if err != nil || len(ws) != 0 {
		t.Fatalf("decode: %v %v", ws, err)
	}
	table, err := New(sect.Containerd)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(table.Names(), ","); got != "crun,kata,runc,runsc" {
		t.Errorf("Names() = %s", got)
	}
	if d := table.Default(); d.Name != "runc" || d.RuntimeType != RuncV2 {
		t.Errorf("Default() = %+v", d)
	}
	runc, _ := table.Get("runc")
	a, err := runc.OptionsAny()
	if err != nil || a.GetTypeUrl() != "containerd.runc.v1.Options" {
		t.Fatalf("runc options: %v %v", a, err)
	}
	runsc, _ := table.Get("runsc")
	a, err = runsc.OptionsAny()
	if err != nil {
		t.Fatal(err)
	}
	var ro runtimeoptions.Options
	if a.GetTypeUrl() != "runtimeoptions.v1.Options" || proto.Unmarshal(a.GetValue(), &ro) != nil ||
		ro.TypeUrl != "io.containerd.runsc.v1.options" || ro.ConfigPath != "/etc/containerd/runsc.toml" {
		t.Errorf("runsc options: %s %+v", a.GetTypeUrl(), &ro)
	}
	kata, _ := table.Get("kata")
	if a, err := kata.OptionsAny(); a != nil || err != nil || kata.RuntimeType != "io.containerd.kata.v2" {
		t.Errorf("kata: %+v %v %v", kata, a, err)
	}
}

func TestRuncOptions(t *testing.T) {
	h := &Handler{Name: "x", RuntimeType: RuncV2, Options: map[string]any{
		"BinaryName": "crun", "Root": "/run/x", "SystemdCgroup": true, "IoUid": int64(1000)}}
	a, err := h.OptionsAny()
	if err != nil {
		t.Fatal(err)
	}
	var o runcopts.Options
	if err := proto.Unmarshal(a.GetValue(), &o); err != nil {
		t.Fatal(err)
	}
	if o.BinaryName != "crun" || o.Root != "/run/x" || !o.SystemdCgroup || o.IoUid != 1000 {
		t.Errorf("decoded %+v", &o)
	}
	for _, bad := range []map[string]any{{"BinaryNme": "x"}, {"SystemdCgroup": "yes"}, {"IoUid": int64(-1)}} {
		h := &Handler{Name: "bad", RuntimeType: RuncV2, Options: bad}
		if _, err := h.OptionsAny(); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), `"bad"`) {
			t.Errorf("%v: err = %v", bad, err)
		}
	}
}

// ConfigBody carries the file's contents when it exists, as containerd's
// CRI sends it.
func TestRuntimeOptionsBody(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runsc.toml")
	if err := os.WriteFile(path, []byte("[runsc_config]\nplatform = \"ptrace\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &Handler{Name: "g", RuntimeType: RunscV1, Options: map[string]any{"ConfigPath": path}}
	a, err := h.OptionsAny()
	if err != nil {
		t.Fatal(err)
	}
	var o runtimeoptions.Options
	if err := proto.Unmarshal(a.GetValue(), &o); err != nil {
		t.Fatal(err)
	}
	if o.TypeUrl != "io.containerd.runsc.v1.options" || !strings.Contains(string(o.ConfigBody), "ptrace") {
		t.Errorf("decoded %+v", &o)
	}
}

func TestTableErrors(t *testing.T) {
	if _, err := New(Config{DefaultRuntimeName: "gvisor"}); !errors.Is(err, errdefs.ErrInvalidArgument) ||
		!strings.Contains(err.Error(), "crun, runc, runsc") {
		t.Errorf("unknown default: %v", err)
	}
	if _, err := New(Config{Runtimes: map[string]*Handler{"x": {RuntimeType: "runc"}}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad runtime type: %v", err)
	}
	table, err := New(Config{DefaultRuntimeName: "ext", Runtimes: map[string]*Handler{
		"ext": {RuntimePath: "/usr/bin/containerd-shim-runc-v2"}}})
	if err != nil {
		t.Fatal(err)
	}
	// A runtime type given directly takes the default handler's path.
	h, err := table.Lookup(RuncV2)
	if err != nil || h.RuntimePath != "/usr/bin/containerd-shim-runc-v2" || h.RuntimeType != RuncV2 {
		t.Errorf("Lookup(runc.v2) = %+v, %v", h, err)
	}
	if _, err := table.Lookup("nope"); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "crun, ext, runc, runsc") {
		t.Errorf("Lookup(nope) = %v", err)
	}
	var zero *Table
	if h, err := zero.Lookup(""); err != nil || h.Name != "runc" {
		t.Errorf("nil table default = %+v, %v", h, err)
	}
}

// containerd 1.6's `config default` runtime block decodes: CriuPath is
// accepted, the per-runtime keys berth does not act on warn only when set.
func TestContainerd16Defaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(`version = 2
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  base_runtime_spec = ""
  cni_conf_dir = ""
  cni_max_conf_num = 0
  container_annotations = []
  pod_annotations = ["io.kubernetes.cri.*"]
  privileged_without_host_devices = false
  runtime_engine = ""
  runtime_path = ""
  runtime_root = ""
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    BinaryName = ""
    CriuImagePath = ""
    CriuPath = ""
    CriuWorkPath = ""
    IoGid = 0
    IoUid = 0
    NoNewKeyring = false
    NoPivotRoot = false
    Root = ""
    ShimCgroup = ""
    SystemdCgroup = false
`), 0o644); err != nil {
		t.Fatal(err)
	}
	c, _, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var sect struct {
		Containerd Config `toml:"containerd"`
	}
	ws, err := c.DecodePlugin("io.containerd.grpc.v1.cri", &sect)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 || !strings.Contains(ws[0].Key, "pod_annotations") {
		t.Errorf("warnings = %v, want one for pod_annotations", ws)
	}
	table, err := New(sect.Containerd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := table.Default().OptionsAny(); err != nil {
		t.Errorf("options of containerd's default dump: %v", err)
	}
}
