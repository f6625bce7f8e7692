package network

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// TestSetupTeardown is the life of one container: attached with two
// published ports, reachable from the host directly and through both,
// 127.0.0.1 included, then detached, twice.
func TestSetupTeardown(t *testing.T) {
	n := newTestNet(t)
	c := startContainer(t)
	ctx := context.Background()
	local, all := freePort(t), freePort(t)
	ports := []PortMapping{
		{HostIP: "127.0.0.1", HostPort: local, ContainerPort: 80, Protocol: "tcp"},
		{HostPort: all, ContainerPort: 80}, // the protocol defaults to tcp
		{HostPort: all, ContainerPort: 53, Protocol: "udp"},
	}
	res, err := n.m.Setup(ctx, n.ns, "web", c.netns, ports)
	if err != nil {
		t.Fatal(err)
	}
	n.checkAttached(t, "web", res, c.netns)
	if res.Ports[1].Protocol != "tcp" {
		t.Errorf("recorded ports = %v, want the default protocol tcp", res.Ports)
	}
	got, err := n.m.Status(n.ns, "web")
	if err != nil || !cmp.Equal(res, got) {
		t.Errorf("Status = %+v, %v; want %+v", got, err, res)
	}
	for _, addr := range []string{
		net.JoinHostPort("127.0.0.1", strconv.Itoa(int(local))),
		net.JoinHostPort("127.0.0.1", strconv.Itoa(int(all))),
		net.JoinHostPort(hostAddr(t, n.subnet), strconv.Itoa(int(all))),
	} {
		if got, err := dial(addr); got != "hi\n" {
			t.Errorf("published port %s: %q, %v", addr, got, err)
		}
	}
	// portmap's snat: 127.0.0.1 crosses to the bridge only with this.
	if b, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + n.bridge + "/route_localnet"); string(b) != "1\n" {
		t.Errorf("route_localnet of %s = %q, %v; want 1", n.bridge, b, err)
	}

	if err := n.m.Teardown(ctx, n.ns, "web"); err != nil {
		t.Fatal(err)
	}
	n.checkDetached(t, "web", res.IP)
	if addr := run(t, "nsenter", "--net="+c.netns, "ip", "-o", "link"); strings.Contains(addr, "eth0") {
		t.Errorf("eth0 is still in the container:\n%s", addr)
	}
	if got, err := dial(net.JoinHostPort("127.0.0.1", strconv.Itoa(int(local)))); err == nil {
		t.Errorf("published port still answers after Teardown: %q", got)
	}
	if err := n.m.Teardown(ctx, n.ns, "web"); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
	if _, err := n.m.Status(n.ns, "web"); !errdefs.IsNotFound(err) {
		t.Errorf("Status after Teardown: %v, want NotFound", err)
	}
}

// TestTeardownAfterContainerExit is the postStop case: the container's
// processes are gone, /proc/<pid>/ns/net with them, and Teardown still
// removes everything, the bridge's masquerade rules included, thanks to
// the pin.
func TestTeardownAfterContainerExit(t *testing.T) {
	n := newTestNet(t)
	c := startContainer(t)
	ctx := context.Background()
	res, err := n.m.Setup(ctx, n.ns, "exited", c.netns, []PortMapping{{HostPort: freePort(t), ContainerPort: 80, Protocol: "tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	c.stop()
	if _, err := os.Stat(c.netns); !os.IsNotExist(err) {
		t.Fatalf("%s still exists after the container stopped (%v)", c.netns, err)
	}
	if err := n.m.Teardown(ctx, n.ns, "exited"); err != nil {
		t.Fatal(err)
	}
	n.checkDetached(t, "exited", res.IP)
}

// TestTeardownWithoutNetNS: once the namespace is gone for good (the pin
// unmounted, as after a reboot), Teardown still releases the address and
// removes the port mappings and firewall rules.
func TestTeardownWithoutNetNS(t *testing.T) {
	n := newTestNet(t)
	c := startContainer(t)
	ctx := context.Background()
	res, err := n.m.Setup(ctx, n.ns, "gone", c.netns, []PortMapping{{HostPort: freePort(t), ContainerPort: 80, Protocol: "tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	c.stop()
	if err := unix.Unmount(res.NetNS, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := n.m.Teardown(ctx, n.ns, "gone"); err != nil {
		t.Fatal(err)
	}
	// Without the namespace the bridge plugin cannot learn which address
	// it masqueraded, so its per-container chain stays; after a reboot
	// iptables is empty anyway. Everything else is gone.
	cid := n.ns + "--gone"
	masq := fmt.Sprintf(`name: \"berth\" id: \"%s\"`, cid)
	rules := run(t, "iptables-save")
	if strings.Contains(rules, masq) {
		t.Logf("the bridge plugin left its masquerade rule for %s, as expected without the namespace", cid)
		rules = strings.ReplaceAll(rules, masq, "")
	}
	if strings.Contains(rules, cid) || strings.Contains(rules, "-d "+res.IP+"/32") || strings.Contains(rules, "-s "+res.IP+"/32 -j ACCEPT") {
		t.Errorf("port mapping or firewall rules left:\n%s", rules)
	}
	if _, err := os.Stat(filepath.Join(n.m.cfg.StateDir, "_ipam", "berth", res.IP)); !os.IsNotExist(err) {
		t.Errorf("the address %s was not released (%v)", res.IP, err)
	}
	if _, err := n.m.Status(n.ns, "gone"); !errdefs.IsNotFound(err) {
		t.Errorf("Status: %v, want NotFound", err)
	}
}

// TestSetupReplacesStaleAttachment: a container started again after a
// postStop that never ran gets a fresh attachment, the old one removed.
func TestSetupReplacesStaleAttachment(t *testing.T) {
	n := newTestNet(t)
	ctx := context.Background()
	old := startContainer(t)
	first, err := n.m.Setup(ctx, n.ns, "again", old.netns, nil)
	if err != nil {
		t.Fatal(err)
	}
	old.stop()
	c := startContainer(t)
	res, err := n.m.Setup(ctx, n.ns, "again", c.netns, nil)
	if err != nil {
		t.Fatal(err)
	}
	n.checkAttached(t, "again", res, c.netns)
	if first.IP != res.IP {
		if _, err := os.Stat(filepath.Join(n.m.cfg.StateDir, "_ipam", "berth", first.IP)); !os.IsNotExist(err) {
			t.Errorf("the first address %s was not released (%v)", first.IP, err)
		}
	}
	if err := n.m.Teardown(ctx, n.ns, "again"); err != nil {
		t.Fatal(err)
	}
	n.checkDetached(t, "again", res.IP)
}

// TestSetupFailureLeavesNothing: a plugin failing after bridge and
// portmap succeeded is reported by name, and what they did is undone.
func TestSetupFailureLeavesNothing(t *testing.T) {
	n := newTestNet(t)
	c := startContainer(t)
	ctx := context.Background()
	failing := t.TempDir()
	script := "#!/bin/sh\ncat >/dev/null\n[ \"$CNI_COMMAND\" = ADD ] || exit 0\necho '{\"cniVersion\":\"1.0.0\",\"code\":999,\"msg\":\"injected failure\"}'\nexit 1\n"
	if err := os.WriteFile(filepath.Join(failing, "failing"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(n.m.cfg.ConfDir, "10-berth.conflist")
	var list map[string]any
	b, _ := os.ReadFile(conf)
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	list["plugins"] = append(list["plugins"].([]any)[:2], map[string]any{"type": "failing"})
	b, _ = json.Marshal(list)
	if err := os.WriteFile(conf, b, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{ConfDir: n.m.cfg.ConfDir, BinDirs: []string{failing, pluginDir}, StateDir: n.m.cfg.StateDir})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Setup(ctx, n.ns, "broken", c.netns, []PortMapping{{HostPort: freePort(t), ContainerPort: 80, Protocol: "tcp"}})
	if err == nil || !strings.Contains(err.Error(), `type="failing"`) || !strings.Contains(err.Error(), "injected failure") || !strings.Contains(err.Error(), `network "berth"`) {
		t.Fatalf("Setup with a failing plugin: %v; want the network, the plugin and its message", err)
	}
	leases, _ := filepath.Glob(filepath.Join(n.m.cfg.StateDir, "_ipam", "berth", "10.*"))
	if len(leases) != 0 {
		t.Errorf("leases left: %v", leases)
	}
	n.checkDetached(t, "broken", "no-address")
}

func TestSetupRejects(t *testing.T) {
	n := newTestNet(t)
	ctx := context.Background()
	if _, err := n.m.Setup(ctx, n.ns, "x", "/nonexistent/ns", nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Setup with no namespace: %v, want InvalidArgument", err)
	}
	if _, err := n.m.Setup(ctx, n.ns, "x", "/proc/self/ns/mnt", nil); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "not a network namespace") {
		t.Errorf("Setup with a mount namespace: %v, want InvalidArgument", err)
	}
	c := startContainer(t)
	if _, err := n.m.Setup(ctx, n.ns, "x", c.netns, []PortMapping{{HostPort: 1, ContainerPort: 2, Protocol: "sctp"}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Setup with sctp: %v, want InvalidArgument", err)
	}
	empty, err := New(Config{ConfDir: t.TempDir(), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := empty.Setup(ctx, n.ns, "x", c.netns, nil); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "EnsureDefault") {
		t.Errorf("Setup without a network configuration: %v, want NotFound saying what writes it", err)
	}
	noPlugins, err := New(Config{ConfDir: n.m.cfg.ConfDir, BinDirs: []string{t.TempDir()}, StateDir: n.m.cfg.StateDir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noPlugins.Setup(ctx, n.ns, "x", c.netns, nil); err == nil || !strings.Contains(err.Error(), "containernetworking-plugins") {
		t.Errorf("Setup without plugins: %v, want the package to install", err)
	}
	n.checkDetached(t, "x", "no-address")
}

// TestRunHook drives both phases with the state runc writes on stdin.
func TestRunHook(t *testing.T) {
	n := newTestNet(t)
	c := startContainer(t)
	ctx := context.Background()
	port := freePort(t)
	ports, _ := json.Marshal([]PortMapping{{HostIP: "127.0.0.1", HostPort: port, ContainerPort: 80, Protocol: "tcp"}})
	state := func(status string, pid int) string {
		b, _ := json.Marshal(map[string]any{
			"ociVersion": "1.2.1", "id": "hooked", "status": status, "pid": pid, "bundle": t.TempDir(),
			"annotations": map[string]string{AnnotationNamespace: n.ns, AnnotationNetwork: "bridge", AnnotationPorts: string(ports)},
		})
		return string(b)
	}
	if err := RunHook(ctx, n.m.cfg, PhaseCreateRuntime, strings.NewReader(state("created", c.pid))); err != nil {
		t.Fatal(err)
	}
	res, err := n.m.Status(n.ns, "hooked")
	if err != nil {
		t.Fatal(err)
	}
	n.checkAttached(t, "hooked", res, c.netns)
	if got, err := dial(net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))); got != "hi\n" {
		t.Errorf("published port: %q, %v", got, err)
	}
	c.stop()
	if err := RunHook(ctx, n.m.cfg, PhasePostStop, strings.NewReader(state("stopped", 0))); err != nil {
		t.Fatal(err)
	}
	n.checkDetached(t, "hooked", res.IP)
}
