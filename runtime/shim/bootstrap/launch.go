package bootstrap

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
)

// DefaultSocketDir is where shim sockets go when neither the daemon nor its
// ttrpc address says otherwise.
const DefaultSocketDir = "/run/berth/s"

// maxSocketPath is the longest unix socket path the kernel accepts, less
// the terminating NUL.
const maxSocketPath = 107

// ListenerFD is the descriptor on which the server process inherits its
// listening socket.
const ListenerFD = 3

// SocketDir chooses the directory of the shim's socket: the one the daemon
// asked for; else "s" beside the daemon's ttrpc socket, so that shims of a
// daemon with its own state directory stay inside it; else
// DefaultSocketDir. A directory too long for a socket path (the name is a
// 64-character hash) falls back to DefaultSocketDir.
func SocketDir(p *Params) string {
	if p.SocketDir != "" {
		return p.SocketDir
	}
	if p.TTRPCAddress != "" {
		dir := filepath.Join(filepath.Dir(strings.TrimPrefix(p.TTRPCAddress, "unix://")), "s")
		if filepath.IsAbs(dir) && len(dir)+1+64 <= maxSocketPath {
			return dir
		}
	}
	return DefaultSocketDir
}

// SocketAddress is the shim's socket for a task: "unix://" + dir + a hash of
// the daemon address, namespace and grouping id, so that a second `start`
// for the same group finds the running shim.
func SocketAddress(dir, daemonAddress, ns, group string) string {
	d := sha256.Sum256([]byte(filepath.Join(daemonAddress, ns, group)))
	return fmt.Sprintf("unix://%s/%x", dir, d)
}

// socketPath strips the scheme from a "unix://" address.
func socketPath(address string) string {
	return strings.TrimPrefix(address, "unix://")
}

// Listen creates the socket of address (mode 0600 in a 0700 directory). If
// a live shim already serves it, it returns an error of class
// errdefs.ErrAlreadyExists; a stale socket file is replaced.
func Listen(address string) (*net.UnixListener, error) {
	path := socketPath(address)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("shim socket directory: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil && errors.Is(err, syscall.EADDRINUSE) {
		if conn, derr := net.DialTimeout("unix", path, time.Second); derr == nil {
			conn.Close()
			return nil, fmt.Errorf("shim socket %s: %w", address, errdefs.ErrAlreadyExists)
		}
		if rerr := os.Remove(path); rerr != nil {
			return nil, fmt.Errorf("remove stale shim socket %s: %w", path, rerr)
		}
		l, err = net.Listen("unix", path)
	}
	if err != nil {
		return nil, fmt.Errorf("listen on shim socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		os.Remove(path)
		return nil, fmt.Errorf("shim socket %s: %w", path, err)
	}
	ul := l.(*net.UnixListener)
	// start closes its copy after handing the socket to the server, which
	// must not remove the file.
	ul.SetUnlinkOnClose(false)
	return ul, nil
}

// RemoveSocket removes the socket file of address, if any.
func RemoveSocket(address string) error {
	if err := os.Remove(socketPath(address)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove shim socket: %w", err)
	}
	return nil
}

// Launch starts the server process: self, in bundle, with the flags that
// identify the task, in a new session (so that the daemon's process group
// signals do not reach it), with l as file descriptor 3 and no stdio (so
// that the daemon, reading start's output to EOF, is not kept waiting). It
// returns the server's pid; the server is not waited for.
func Launch(self, bundle string, p *Params, l *net.UnixListener) (int, error) {
	f, err := l.File()
	if err != nil {
		return 0, fmt.Errorf("shim socket descriptor: %w", err)
	}
	defer f.Close()
	args := []string{"-namespace", p.Namespace, "-id", p.InstanceID, "-address", p.GRPCAddress}
	if p.LogLevel <= -4 {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = bundle
	cmd.Env = append(os.Environ(),
		EnvTTRPCAddress+"="+p.TTRPCAddress,
		EnvGRPCAddress+"="+p.GRPCAddress,
		EnvNamespace+"="+p.Namespace,
		"GOMAXPROCS=2",
	)
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start shim server %s: %w", self, err)
	}
	pid := cmd.Process.Pid
	// The server outlives start: release it instead of waiting.
	_ = cmd.Process.Release()
	return pid, nil
}

// WriteAddress records the shim's address in the bundle's `address` file,
// as containerd's shims do, for the daemon to reconnect after a restart.
func WriteAddress(bundle, address string) error {
	return writeFileAtomic(filepath.Join(bundle, "address"), []byte(address))
}

// WritePid records the server's pid in the bundle's `shim.pid` file.
func WritePid(bundle string, pid int) error {
	return writeFileAtomic(filepath.Join(bundle, "shim.pid"), []byte(fmt.Sprint(pid)))
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
