package network

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestContainerCannotReachHostLoopback: with a published port (so
// route_localnet is on for the bridge), a container that routes
// 127.0.0.1 through its gateway must not reach a host service listening
// on 127.0.0.1 only (CVE-2020-8558), while the published port still
// answers on 127.0.0.1.
func TestContainerCannotReachHostLoopback(t *testing.T) {
	n := newTestNet(t)
	c := startContainer(t)
	ctx := context.Background()
	port := freePort(t)
	res, err := n.m.Setup(ctx, n.ns, "guard", c.netns, []PortMapping{{HostIP: "127.0.0.1", HostPort: port, ContainerPort: 80}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.m.Teardown(ctx, n.ns, "guard") })
	if got, err := dial(net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))); got != "hi\n" {
		t.Fatalf("published port on 127.0.0.1: %q, %v", got, err)
	}

	secret, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer secret.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if conn, err := secret.Accept(); err == nil {
			conn.Close()
			accepted <- struct{}{}
		}
	}()
	// Inside the container: send 127.0.0.1 out through eth0 to the host.
	in := func(args ...string) {
		out, err := exec.Command("nsenter", append([]string{"--net=" + c.netns}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("in the container: %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	in("sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1")
	// lo is down in a fresh namespace, so 127.0.0.0/8 has no local route
	// to remove; if it is up, drop the route.
	_ = exec.Command("nsenter", "--net="+c.netns, "ip", "route", "del", "local", "127.0.0.0/8", "dev", "lo", "table", "local").Run()
	in("ip", "route", "add", "127.0.0.1/32", "via", res.Gateway, "dev", "eth0")
	_, secretPort, _ := net.SplitHostPort(secret.Addr().String())
	attempt := exec.Command("nsenter", "--net="+c.netns, "/bin/busybox", "nc", "-w", "2", "127.0.0.1", secretPort)
	_ = attempt.Run()
	select {
	case <-accepted:
		t.Fatal("a container reached a host service bound to 127.0.0.1")
	case <-time.After(500 * time.Millisecond):
	}
}
