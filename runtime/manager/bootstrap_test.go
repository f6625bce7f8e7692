package manager

import (
	"testing"

	"github.com/berth-dev/berth/runtime/shim/bootstrap"
	"google.golang.org/protobuf/types/known/anypb"
)

// What the daemon writes, the shim side reads back, and the other way.
func TestBootstrapRoundTrip(t *testing.T) {
	task := &Task{ID: "c1", Namespace: "ns1"}
	cfg := Config{GRPCAddress: "/run/b.sock", TTRPCAddress: "/run/b.sock.ttrpc"}
	opts := &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: []byte{0x32, 0x04, 'c', 'r', 'u', 'n'}}
	flags := bootstrap.Flags{ID: "c1", Namespace: "ns1", Address: "/run/b.sock"}
	p, err := bootstrap.ReadParams(encodeParams(task, cfg, opts), flags, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if p.Legacy || p.TTRPCAddress != cfg.TTRPCAddress || p.GRPCAddress != cfg.GRPCAddress ||
		len(p.Options) != 1 || p.Options[0].GetTypeUrl() != opts.TypeUrl || string(p.Options[0].GetValue()) != string(opts.Value) {
		t.Errorf("shim read %+v", p)
	}
	addr, err := decodeResult(bootstrap.Response(p, "unix:///run/s/abc"))
	if err != nil || addr != "unix:///run/s/abc" {
		t.Errorf("decodeResult = %q, %v", addr, err)
	}
	for _, bad := range [][]byte{{0xff}, bootstrap.EncodeResult(3, "tcp://x")} {
		if _, err := decodeResult(bad); err == nil {
			t.Errorf("decodeResult(%x) accepted", bad)
		}
	}
}
