package bootstrap

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func flags() Flags {
	return Flags{Namespace: "k8s.io", ID: "c1", Address: "/run/berth/berth.sock"}
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestReadParamsBootstrap(t *testing.T) {
	opts := &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: []byte{0x32, 0x04, 'c', 'r', 'u', 'n'}}
	optsBytes, err := proto.Marshal(opts)
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	b = appendString(b, 1, "c1")
	b = appendString(b, 2, "k8s.io")
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	debug := int64(-4) // a negative enum value
	b = protowire.AppendVarint(b, uint64(debug))
	b = appendString(b, 4, "2.3.0")
	b = appendString(b, 5, "/run/x/x.sock.ttrpc")
	b = appendString(b, 6, "/run/x/x.sock")
	b = appendString(b, 8, string(appendString(nil, 1, string(optsBytes))))
	b = appendString(b, 9, "/run/x/s")
	p, err := ReadParams(b, flags(), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if p.Legacy || p.LogLevel != -4 || p.TTRPCAddress != "/run/x/x.sock.ttrpc" || p.GRPCAddress != "/run/x/x.sock" || p.SocketDir != "/run/x/s" {
		t.Errorf("params = %+v", p)
	}
	if len(p.Options) != 1 || !proto.Equal(p.Options[0], opts) {
		t.Errorf("options = %v, want %v", p.Options, opts)
	}
	if got := Response(p, "unix:///run/x/s/abc"); string(got) == "unix:///run/x/s/abc" {
		t.Error("the bootstrap form was answered with a plain address")
	}
}

// Runtime options on stdin decode as BootstrapParams too (type_url as the
// id): the id and namespace tell the forms apart.
func TestReadParamsLegacy(t *testing.T) {
	opts, err := proto.Marshal(&anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: []byte{0x38, 0x01}})
	if err != nil {
		t.Fatal(err)
	}
	for name, payload := range map[string][]byte{"empty": nil, "options": opts} {
		f := flags()
		f.Debug = true
		p, err := ReadParams(payload, f, env(map[string]string{EnvTTRPCAddress: "/run/berth/berth.sock.ttrpc"}))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !p.Legacy || p.InstanceID != "c1" || p.Namespace != "k8s.io" || p.TTRPCAddress != "/run/berth/berth.sock.ttrpc" || p.LogLevel != -4 {
			t.Errorf("%s: params = %+v", name, p)
		}
		wantOptions := 0
		if len(payload) > 0 {
			wantOptions = 1
		}
		if len(p.Options) != wantOptions {
			t.Errorf("%s: options = %v", name, p.Options)
		}
		if got := string(Response(p, "unix:///run/berth/s/abc")); got != "unix:///run/berth/s/abc" {
			t.Errorf("%s: response %q, want the plain address", name, got)
		}
	}
	if _, err := ReadParams([]byte{0xff, 0xff}, flags(), env(nil)); err == nil {
		t.Error("garbage on stdin was accepted")
	}
}

func TestEncodeResult(t *testing.T) {
	b := EncodeResult(3, "unix:///s")
	want := []byte{0x08, 0x03, 0x12, 0x09}
	if !strings.HasPrefix(string(b), string(want)) || !strings.HasSuffix(string(b), "\x1a\x05ttrpc") {
		t.Errorf("EncodeResult = %x", b)
	}
}

func TestSocketDirAndAddress(t *testing.T) {
	for _, tc := range []struct {
		p    Params
		want string
	}{
		{Params{SocketDir: "/run/custom"}, "/run/custom"},
		{Params{TTRPCAddress: "unix:///run/berth/berth.sock.ttrpc"}, "/run/berth/s"},
		{Params{TTRPCAddress: "/tmp/d/berth.sock.ttrpc"}, "/tmp/d/s"},
		{Params{TTRPCAddress: "/" + strings.Repeat("x", 60) + "/berth.sock.ttrpc"}, DefaultSocketDir},
		{Params{TTRPCAddress: "relative.sock"}, DefaultSocketDir},
		{Params{}, DefaultSocketDir},
	} {
		if got := SocketDir(&tc.p); got != tc.want {
			t.Errorf("SocketDir(%+v) = %q, want %q", tc.p, got, tc.want)
		}
	}
	a := SocketAddress("/run/berth/s", "/run/berth/berth.sock", "default", "c1")
	if !strings.HasPrefix(a, "unix:///run/berth/s/") || len(a) != len("unix:///run/berth/s/")+64 {
		t.Errorf("SocketAddress = %q", a)
	}
	if a == SocketAddress("/run/berth/s", "/run/berth/berth.sock", "other", "c1") {
		t.Error("namespaces share a socket address")
	}
}

func TestListen(t *testing.T) {
	dir, err := os.MkdirTemp("", "bsk")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	address := "unix://" + filepath.Join(dir, "s", "sock")
	l, err := Listen(address)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "s", "sock")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket: %v, %v", fi, err)
	}
	if _, err := Listen(address); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second Listen while served: %v, want AlreadyExists", err)
	}
	l.Close() // the file stays: stale
	l2, err := Listen(address)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	l2.Close()
	if err := RemoveSocket(address); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("unix", filepath.Join(dir, "s", "sock")); err == nil || !errors.Is(err, os.ErrNotExist) && !strings.Contains(err.Error(), "no such file") {
		t.Errorf("dial after RemoveSocket: %v", err)
	}
}

func TestParseFlags(t *testing.T) {
	f, err := ParseFlags([]string{"-namespace", "ns", "-id", "x", "-address", "/a", "-publish-binary", "/bin/berthd", "-bundle", "/b", "-debug", "delete"})
	if err != nil {
		t.Fatal(err)
	}
	if f.Namespace != "ns" || f.ID != "x" || f.Address != "/a" || f.Bundle != "/b" || !f.Debug || f.Action != "delete" {
		t.Errorf("flags = %+v", f)
	}
	if _, err := ParseFlags([]string{"-unknown"}); err == nil {
		t.Error("an unknown flag was accepted")
	}
}

func FuzzReadParams(f *testing.F) {
	f.Add(appendString(appendString(nil, 1, "c1"), 2, "k8s.io"))
	f.Add([]byte{0x0a, 0x01, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ReadParams(b, flags(), env(nil))
	})
}
