package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func writeConf(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadPodNetworks(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := LoadPodNetworks(dir, 1); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), dir) {
		t.Errorf("empty conf dir: %v, want NotFound naming %s", err, dir)
	}
	writeConf(t, dir, "20-second.conflist", `{"cniVersion": "1.0.0", "name": "second", "plugins": [{"type": "bridge"}]}`)
	writeConf(t, dir, "10-first.conf", `{"cniVersion": "0.4.0", "name": "first", "type": "bridge"}`)
	writeConf(t, dir, "99-ignored.txt", `not a configuration`)
	lists, files, err := LoadPodNetworks(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(lists) != 1 || lists[0].Name != "first" || len(lists[0].Plugins) != 1 || files[0] != filepath.Join(dir, "10-first.conf") {
		t.Errorf("first network in name order: %d lists, %v", len(lists), files)
	}
	if lists, _, err := LoadPodNetworks(dir, 0); err != nil || len(lists) != 2 || lists[1].Name != "second" {
		t.Errorf("every network: %d lists, %v", len(lists), err)
	}
	writeConf(t, dir, "15-broken.conflist", `{"name": `)
	_, _, err = LoadPodNetworks(dir, 0)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "15-broken.conflist") {
		t.Errorf("broken file: %v, want InvalidArgument naming it", err)
	}
}

func TestNewNetNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("network namespaces need root: run `go test ./network/` as root")
	}
	path := filepath.Join(t.TempDir(), "ns1")
	if err := NewNetNS(path); err != nil {
		t.Fatal(err)
	}
	if !IsNetNS(path) {
		t.Fatalf("%s is not a network namespace", path)
	}
	self, _ := os.Readlink("/proc/self/ns/net")
	out, err := exec.Command("nsenter", "--net="+path, "readlink", "/proc/self/ns/net").Output()
	if err != nil || strings.TrimSpace(string(out)) == self {
		t.Errorf("the new namespace is berthd's own (%s, %v)", out, err)
	}
	// This process stayed where it was.
	if now, _ := os.Readlink("/proc/self/ns/net"); now != self {
		t.Errorf("the test process moved from %s to %s", self, now)
	}
	if err := NewNetNS(path); !errors.Is(err, os.ErrExist) {
		t.Errorf("NewNetNS on an existing pin: %v, want ErrExist", err)
	}
	if err := RemoveNetNS(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin still there after RemoveNetNS: %v", err)
	}
	if err := RemoveNetNS(path); err != nil {
		t.Errorf("RemoveNetNS of a removed pin: %v", err)
	}
}

// TestPodNetwork attaches a pod's namespace to the first network of a
// conf dir, with a host port, and detaches it.
func TestPodNetwork(t *testing.T) {
	requireHost(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "net.d")
	if err := os.MkdirAll(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	bridge, subnet := "bp"+randomHex(t, 4), freeSubnet(t)
	id := "pod" + randomHex(t, 8)
	writeConf(t, conf, "10-pods.conflist", fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "pods", "plugins": [
  {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": true,
   "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}`, bridge, filepath.Join(dir, "ipam"), subnet))
	t.Cleanup(func() {
		_ = removeRulesMentioning("nat", id)
		_ = exec.Command("ip", "link", "del", bridge).Run()
	})
	p := NewPodNetwork(PodConfig{ConfDir: conf, BinDirs: []string{pluginDir}, CacheDir: filepath.Join(dir, "cache")})
	ns := filepath.Join(dir, "netns")
	if err := NewNetNS(ns); err != nil {
		t.Fatal(err)
	}
	defer RemoveNetNS(ns)
	port := freePort(t)
	att := PodAttachment{ID: id, NetNS: ns, Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAME", "p"}},
		Ports: []PortMapping{{HostPort: port, ContainerPort: 80, Protocol: "tcp"}}}
	res, err := p.Setup(context.Background(), att)
	if err != nil {
		t.Fatal(err)
	}
	ip, err := netip.ParseAddr(res.IPs[0])
	if err != nil || !subnet.Contains(ip) || res.Network != "pods" || res.Interface != IfName || len(res.Result) == 0 {
		t.Fatalf("result: %+v", res)
	}
	out := run(t, "nsenter", "--net="+ns, "ip", "-o", "addr")
	if !strings.Contains(out, ip.String()+"/") || !strings.Contains(out, "lo ") {
		t.Errorf("the namespace lacks %s or a loopback interface:\n%s", ip, out)
	}
	if nat := run(t, "iptables-save", "-t", "nat"); !strings.Contains(nat, id) {
		t.Errorf("no nat rule of pod %s after setup", id)
	}
	if err := p.Teardown(context.Background(), att, res.Network); err != nil {
		t.Fatal(err)
	}
	if nat := run(t, "iptables-save", "-t", "nat"); strings.Contains(nat, id) {
		t.Errorf("nat rules of pod %s left after teardown", id)
	}
	// Again, with the namespace gone: DEL from the cache still works.
	if err := RemoveNetNS(ns); err != nil {
		t.Fatal(err)
	}
	att.NetNS = ns
	if err := p.Teardown(context.Background(), att, res.Network); err != nil {
		t.Errorf("second teardown, namespace gone: %v", err)
	}
}
