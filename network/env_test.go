package network

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The real peers of the tests, with what installs them on Debian.
var (
	hostTools = map[string]string{
		"iptables": "iptables", "iptables-save": "iptables", "ip": "iproute2",
		"nsenter": "util-linux", "unshare": "util-linux", "busybox": "busybox-static", "runc": "runc",
	}
	pluginDir = "/usr/lib/cni"
	plugins   = []string{"bridge", "host-local", "portmap", "firewall", "tuning"}
)

// requireHost fails (never skips) without root, the tools or the CNI
// plugins: the package cannot be tested without them.
func requireHost(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the network tests need root: run `go test ./network/` as root")
	}
	for tool, pkg := range hostTools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the network tests need %s: apt-get install %s (%v)", tool, pkg, err)
		}
	}
	for _, p := range plugins {
		if _, err := os.Stat(filepath.Join(pluginDir, p)); err != nil {
			t.Fatalf("the network tests need the CNI plugin %s: apt-get install containernetworking-plugins (%v)", p, err)
		}
	}
}

// testNet is a Manager on temporary directories whose default network has
// a bridge and a subnet of its own, and a namespace no other test uses.
type testNet struct {
	m      *Manager
	ns     string
	bridge string
	subnet netip.Prefix
}

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	requireHost(t)
	dir := t.TempDir()
	m, err := New(Config{ConfDir: filepath.Join(dir, "net.d"), BinDirs: []string{pluginDir}, StateDir: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	suffix := randomHex(t, 4)
	n := &testNet{m: m, ns: "berthtest-" + suffix, bridge: "bt" + suffix, subnet: freeSubnet(t)}
	if err := m.EnsureDefault(WithBridge(n.bridge), WithSubnet(n.subnet)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.cleanup(t) })
	return n
}

// cleanup removes what a failed test may have left: pins, rules of its
// containers or subnet, the bridge. A passing test leaves none of the
// first two, which it checks itself.
func (n *testNet) cleanup(t *testing.T) {
	pins, _ := filepath.Glob(filepath.Join(n.m.cfg.pinDir(), "*"))
	for _, p := range pins {
		if err := unpinNetNS(p); err != nil {
			t.Error(err)
		}
	}
	subnetText := strings.TrimSuffix(n.subnet.Addr().String(), "0") // "10.201.7."
	for _, table := range []string{"nat", "filter"} {
		if err := removeRulesMentioning(table, n.ns, subnetText); err != nil {
			t.Error(err)
		}
	}
	if out, err := exec.Command("ip", "link", "del", n.bridge).CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot find device") {
		t.Errorf("ip link del %s: %v: %s", n.bridge, err, out)
	}
}

// removeRulesMentioning deletes the rules holding any of markers and the
// per-container chains they jump to.
func removeRulesMentioning(table string, markers ...string) error {
	out, err := exec.Command("iptables", "-t", table, "-S").Output()
	if err != nil {
		return fmt.Errorf("iptables -t %s -S: %w", table, err)
	}
	var chains []string
	for line := range strings.Lines(string(out)) {
		args := splitRule(strings.TrimSpace(line))
		if len(args) < 2 || args[0] != "-A" || !containsAny(line, markers) {
			continue
		}
		if err := iptables(append([]string{"-t", table, "-D"}, args[1:]...)...); err != nil {
			return err
		}
		for i, a := range args[:len(args)-1] {
			if next := args[i+1]; a == "-j" && strings.HasPrefix(next, "CNI-") && !strings.HasPrefix(next, "CNI-HOSTPORT-") && next != "CNI-FORWARD" && next != "CNI-ADMIN" {
				chains = append(chains, next)
			}
		}
	}
	for _, c := range chains {
		iptables("-t", table, "-F", c)
		iptables("-t", table, "-X", c)
	}
	return nil
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// freeSubnet picks a random /24 in 10.200.0.0/13 that no address or route
// of the host overlaps.
func freeSubnet(t *testing.T) netip.Prefix {
	t.Helper()
	var used []netip.Prefix
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			used = append(used, p)
		}
	}
	out, _ := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	for line := range strings.Lines(string(out)) {
		for _, f := range strings.Fields(line) {
			if p, err := netip.ParsePrefix(f); err == nil {
				used = append(used, p)
			}
		}
	}
	for range 100 {
		b := make([]byte, 2)
		rand.Read(b)
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200 + b[0]%8, b[1], 0}), 24)
		free := true
		for _, u := range used {
			free = free && !u.Overlaps(p)
		}
		if free {
			return p
		}
	}
	t.Fatal("no free subnet in 10.200.0.0/13")
	return netip.Prefix{}
}

// hostAddr is an IPv4 address of the host outside subnet and loopback.
func hostAddr(t *testing.T, subnet netip.Prefix) string {
	t.Helper()
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && p.Addr().IsGlobalUnicast() && !subnet.Contains(p.Addr()) {
			return p.Addr().String()
		}
	}
	t.Fatal("the host has no IPv4 address besides loopback")
	return ""
}

// freePort is a TCP port nothing listens on now.
func freePort(t *testing.T) int32 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return int32(ln.Addr().(*net.TCPAddr).Port)
}

// container is a process in a network namespace of its own, serving "hi"
// on port 80: what a container is to the network.
type container struct {
	cmd   *exec.Cmd
	pid   int
	netns string
	once  sync.Once
}

func startContainer(t *testing.T) *container {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--net", exe)
	cmd.Env = append(os.Environ(), helperEnv+"=serve")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the test container: %v", err)
	}
	c := &container{cmd: cmd, pid: cmd.Process.Pid, netns: fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)}
	t.Cleanup(c.stop)
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-ready:
		if line != "ready\n" {
			t.Fatalf("test container: %q, want ready", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("test container not ready after 10s")
	}
	return c
}

// stop kills the container; its namespace then lives only if pinned.
func (c *container) stop() {
	c.once.Do(func() {
		c.cmd.Process.Kill()
		c.cmd.Wait()
	})
}

// dial connects to addr and returns what the server says.
func dial(addr string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(conn)
	return string(b), err
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// checkAttached checks what Setup must have made of container id.
func (n *testNet) checkAttached(t *testing.T, id string, res *Result, netns string) {
	t.Helper()
	cid := n.ns + "--" + id
	ip, err := netip.ParseAddr(res.IP)
	if err != nil || !n.subnet.Contains(ip) {
		t.Fatalf("Setup gave IP %q, want one in %s", res.IP, n.subnet)
	}
	if res.Gateway != n.subnet.Addr().Next().String() || res.MAC == "" || res.Interface != "eth0" || res.Network != "berth" {
		t.Errorf("result = %+v, want gateway %s, a MAC, eth0, network berth", res, n.subnet.Addr().Next())
	}
	if want := filepath.Join(n.m.cfg.StateDir, "_netns", cid); res.NetNS != want {
		t.Errorf("result netns = %s, want the pin %s", res.NetNS, want)
	}
	if addr := run(t, "nsenter", "--net="+netns, "ip", "-4", "addr", "show", "dev", "eth0"); !strings.Contains(addr, " "+res.IP+"/24 ") {
		t.Errorf("eth0 in the container:\n%s\nwant %s/24", addr, res.IP)
	}
	if got, err := dial(net.JoinHostPort(res.IP, "80")); got != "hi\n" {
		t.Errorf("host to container %s:80: %q, %v", res.IP, got, err)
	}
	rules := run(t, "iptables-save")
	if !strings.Contains(rules, cid) || !strings.Contains(rules, res.IP+"/32") {
		t.Errorf("iptables-save has no rule for %s (%s):\n%s", cid, res.IP, rules)
	}
	if _, err := os.Stat(filepath.Join(n.m.cfg.StateDir, "_ipam", "berth", res.IP)); err != nil {
		t.Errorf("host-local's lease: %v", err)
	}
}

// checkDetached checks that nothing of container id's attachment is left:
// rules, lease, pin, record, the bridge's port.
func (n *testNet) checkDetached(t *testing.T, id, ip string) {
	t.Helper()
	cid := n.ns + "--" + id
	if rules := run(t, "iptables-save"); strings.Contains(rules, cid) || strings.Contains(rules, ip+"/32") {
		t.Errorf("iptables-save still mentions %s or %s/32:\n%s", cid, ip, rules)
	}
	if _, err := os.Stat(filepath.Join(n.m.cfg.StateDir, "_ipam", "berth", ip)); !os.IsNotExist(err) {
		t.Errorf("host-local's lease of %s is still there (%v)", ip, err)
	}
	if _, err := os.Stat(filepath.Join(n.m.cfg.pinDir(), cid)); !os.IsNotExist(err) {
		t.Errorf("the network namespace is still pinned (%v)", err)
	}
	if res, err := n.m.Status(n.ns, id); err == nil {
		t.Errorf("Status after Teardown = %+v", res)
	}
	// No bridge (no plugin ran) is no port either.
	out, err := exec.Command("ip", "-o", "link", "show", "master", n.bridge).CombinedOutput()
	if (err != nil && !strings.Contains(string(out), "does not exist")) || (err == nil && len(out) > 0) {
		t.Errorf("bridge %s still has ports (%v):\n%s", n.bridge, err, out)
	}
}
