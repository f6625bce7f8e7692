package runtimeopts

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	runcopts "github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

const runscTOML = `
binary_name = "/opt/runsc"
root = "/run/custom"
io_uid = 5
log_level = "debug"

[runsc_config]
platform = "ptrace"
network = "none"
debug = true
`

func protoAny(t *testing.T, url string, m proto.Message) *anypb.Any {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return &anypb.Any{TypeUrl: url, Value: b}
}

func writeTOML(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "runsc.toml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDecode(t *testing.T) {
	path := writeTOML(t, runscTOML)
	fromFile := &Config{
		BinaryName:  "/opt/runsc",
		Root:        "/run/custom",
		IoUID:       5,
		GlobalFlags: []string{"--debug=true", "--network=none", "--platform=ptrace"},
	}
	gvisorDefaults := &Config{BinaryName: "runsc", Root: DefaultRunscRoot}
	for _, tc := range []struct {
		name string
		in   *anypb.Any
		want *Config
	}{
		{"none", nil, &Config{}},
		{"runc", protoAny(t, "containerd.runc.v1.Options", &runcopts.Options{BinaryName: "crun", Root: "/r", IoGid: 3, SystemdCgroup: true, ShimCgroup: "/shim"}),
			&Config{BinaryName: "crun", Root: "/r", IoGID: 3, SystemdCgroup: true, ShimCgroup: "/shim"}},
		{"CRI generic options for gVisor, config path", protoAny(t, "runtimeoptions.v1.Options", &runtimeoptions.Options{TypeUrl: RunscOptionsType, ConfigPath: path}), fromFile},
		{"CRI generic options for gVisor, body wins", protoAny(t, "runtimeoptions.v1.Options", &runtimeoptions.Options{TypeUrl: RunscOptionsType, ConfigPath: "/nonexistent", ConfigBody: []byte(runscTOML)}), fromFile},
		{"CRI generic options for gVisor, no file", protoAny(t, "runtimeoptions.v1.Options", &runtimeoptions.Options{TypeUrl: RunscOptionsType}), gvisorDefaults},
		{"CRI generic options for another runtime", protoAny(t, "runtimeoptions.v1.Options", &runtimeoptions.Options{TypeUrl: "io.containerd.kata.v2.options", ConfigPath: "/nonexistent"}), &Config{}},
		{"runsc type, protobuf", protoAny(t, RunscOptionsType, &runtimeoptions.Options{TypeUrl: RunscOptionsType, ConfigPath: path}), fromFile},
		{"runsc type, JSON with the TOML keys", &anypb.Any{TypeUrl: RunscOptionsType, Value: []byte(`{"TypeUrl": "io.containerd.runsc.v1.options", "ConfigPath": "` + path + `"}`)}, fromFile},
		{"runsc type, JSON overriding the file", &anypb.Any{TypeUrl: RunscOptionsType, Value: []byte(`{"ConfigPath": "` + path + `", "binary_name": "/usr/bin/runsc", "root": "/r", "IoUid": 0, "RunscConfig": {"network": "host", "num-network-channels": 2}}`)},
			&Config{BinaryName: "/usr/bin/runsc", Root: "/r", GlobalFlags: []string{"--debug=true", "--network=host", "--num-network-channels=2", "--platform=ptrace"}}},
		{"runsc type, empty JSON", &anypb.Any{TypeUrl: RunscOptionsType, Value: []byte(`{}`)}, gvisorDefaults},
		{"unknown type", &anypb.Any{TypeUrl: "example.com/Other", Value: []byte{0xff}}, &Config{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Decode = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	badTOML := writeTOML(t, "root = [")
	table := writeTOML(t, "[runsc_config.nested]\nx = 1\n")
	for _, tc := range []struct {
		name  string
		in    *anypb.Any
		check func(error) bool
	}{
		{"bad runc protobuf", &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: []byte{0xff}}, errdefs.IsInvalidArgument},
		{"bad runsc value", &anypb.Any{TypeUrl: RunscOptionsType, Value: []byte{0xff}}, errdefs.IsInvalidArgument},
		{"missing config file", protoAny(t, "runtimeoptions.v1.Options", &runtimeoptions.Options{TypeUrl: RunscOptionsType, ConfigPath: "/nonexistent/runsc.toml"}), errdefs.IsFailedPrecondition},
		{"bad TOML", protoAny(t, "runtimeoptions.v1.Options", &runtimeoptions.Options{TypeUrl: RunscOptionsType, ConfigPath: badTOML}), errdefs.IsInvalidArgument},
		{"table in runsc_config", protoAny(t, "runtimeoptions.v1.Options", &runtimeoptions.Options{TypeUrl: RunscOptionsType, ConfigPath: table}), errdefs.IsInvalidArgument},
		{"unknown JSON key", &anypb.Any{TypeUrl: RunscOptionsType, Value: []byte(`{"BinaryNmae": "x"}`)}, errdefs.IsInvalidArgument},
		{"JSON of the wrong type", &anypb.Any{TypeUrl: RunscOptionsType, Value: []byte(`{"IoUid": "zero"}`)}, errdefs.IsInvalidArgument},
		{"foreign TypeUrl in JSON", &anypb.Any{TypeUrl: RunscOptionsType, Value: []byte(`{"TypeUrl": "io.containerd.kata.v2"}`)}, errdefs.IsInvalidArgument},
		{"flag name with =", &anypb.Any{TypeUrl: RunscOptionsType, Value: []byte(`{"RunscConfig": {"a=b": "c"}}`)}, errdefs.IsInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode(tc.in); !tc.check(err) {
				t.Errorf("Decode: %v", err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(RunscOptionsType, []byte(`{"ConfigBody": "cm9vdCA9ICIvciIK", "RunscConfig": {"debug": true}}`))
	f.Add("runtimeoptions.v1.Options", []byte{0x0a, 0x1e})
	f.Add("containerd.runc.v1.Options", []byte{0x32, 0x04, 'c', 'r', 'u', 'n'})
	f.Fuzz(func(t *testing.T, url string, value []byte) {
		_, _ = Decode(&anypb.Any{TypeUrl: url, Value: value})
	})
}
