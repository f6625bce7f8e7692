package cri

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	goruntime "runtime"
	"strconv"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// portForwardDialTimeout bounds connecting to the pod's port.
const portForwardDialTimeout = 10 * time.Second

// PortForward connects conn to 127.0.0.1:port inside pod sandbox id's
// network namespace (the host's for host-network pods) and copies both
// ways until either side is done.
func (r streamRuntime) PortForward(ctx context.Context, id string, port int32, conn io.ReadWriteCloser) error {
	sb, err := r.s.getSandbox(id)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	var c net.Conn
	if sb.meta.NetNS == "" {
		c, err = (&net.Dialer{Timeout: portForwardDialTimeout}).DialContext(ctx, "tcp", addr)
	} else {
		c, err = dialInNetNS(ctx, sb.meta.NetNS, addr)
	}
	if err != nil {
		return fmt.Errorf("pod sandbox %q: %w", sb.meta.ID, err)
	}
	defer c.Close()
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(c, conn)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(conn, c)
		done <- struct{}{}
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// dialInNetNS connects to addr from inside the network namespace at
// nsPath: a socket stays in the namespace it was created in, so only the
// dial runs on a thread switched into it. A thread that cannot switch
// back is left locked, and Go discards it with its goroutine.
func dialInNetNS(ctx context.Context, nsPath, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		c, restored, err := dialFromThread(ctx, nsPath, addr)
		if restored {
			goruntime.UnlockOSThread()
		}
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// dialFromThread dials from the calling (locked) thread; restored is
// false when the thread stays in the pod's namespace.
func dialFromThread(ctx context.Context, nsPath, addr string) (c net.Conn, restored bool, err error) {
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return nil, true, err
	}
	defer self.Close()
	target, err := os.Open(nsPath)
	if err != nil {
		return nil, true, fmt.Errorf("network namespace %s: %w", nsPath, errdefs.ErrNotFound)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, true, fmt.Errorf("enter network namespace %s: %w", nsPath, err)
	}
	d := net.Dialer{Timeout: portForwardDialTimeout}
	c, err = d.DialContext(ctx, "tcp4", addr)
	restored = unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil
	return c, restored, err
}
