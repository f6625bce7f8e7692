// Package daemon runs berthd or containerd for a benchmark, each on a
// directory of its own: config, root, state, socket and log all live in
// it, so that a bench never touches a system daemon's /var/lib or /run
// state and two daemons run side by side.
//
// # Lifecycle
//
//  1. Start writes Config.TOML to <dir>/config.toml and starts the binary
//     with the flags berthd and containerd both take (--config --root
//     --state --address --log-level). It does not wait.
//  2. Ready polls the socket until it accepts a connection; Exited and
//     Err report a daemon that died meanwhile.
//  3. Stop sends SIGTERM, then SIGKILL after a grace period, and waits.
//  4. RemoveTree removes the directory once the daemon is stopped,
//     unmounting whatever a daemon or its shims left mounted below it.
//
// A started daemon gets SIGKILL when the bench dies (Pdeathsig), so a
// crashed bench does not leave it running.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// maxSocketPath is the longest unix socket path the kernel accepts.
const maxSocketPath = 107

// Config is one daemon to start.
type Config struct {
	// Name is what messages call the daemon: "berthd", "containerd".
	Name   string
	Binary string
	// Dir holds the config, root, state, socket and log.
	Dir string
	// Disabled are the plugins listed in disabled_plugins.
	Disabled []string
	// Extra is TOML appended after the [grpc] table.
	Extra string
	// LogLevel is --log-level; "" means "warn", so that logging costs
	// the daemon little while it is measured.
	LogLevel string
}

// Socket is the daemon's gRPC socket, <Dir>/d.sock.
func (c Config) Socket() string { return filepath.Join(c.Dir, "d.sock") }

// TOML is the config file: version 2, disabled_plugins, the [grpc]
// address, then Extra.
func (c Config) TOML() string {
	var b strings.Builder
	b.WriteString("version = 2\n")
	if len(c.Disabled) > 0 {
		b.WriteString("disabled_plugins = [\n")
		for _, p := range c.Disabled {
			fmt.Fprintf(&b, "  %q,\n", p)
		}
		b.WriteString("]\n")
	}
	fmt.Fprintf(&b, "\n[grpc]\n  address = %q\n", c.Socket())
	if c.Extra != "" {
		b.WriteString("\n" + strings.TrimRight(c.Extra, "\n") + "\n")
	}
	return b.String()
}

// ContainerdOpt is the Extra that keeps containerd's opt plugin in dir:
// Debian's /etc/containerd/config.toml points it at /var/lib/containerd,
// and the plugin creates that directory at start-up.
func ContainerdOpt(dir string) string {
	return fmt.Sprintf("[plugins.\"io.containerd.internal.v1.opt\"]\n  path = %q\n", filepath.Join(dir, "opt"))
}

// Daemon is a started daemon.
type Daemon struct {
	Name   string
	Dir    string
	Socket string
	// Started is when the process was started.
	Started time.Time

	cmd     *exec.Cmd
	logPath string
	log     *os.File
	exited  chan struct{}
	waitErr error
}

// Start creates cfg.Dir, writes the config and starts the daemon.
func Start(cfg Config) (*Daemon, error) {
	d := &Daemon{Name: cfg.Name, Dir: cfg.Dir, Socket: cfg.Socket(), exited: make(chan struct{}),
		logPath: filepath.Join(cfg.Dir, "daemon.log")}
	if len(d.Socket) > maxSocketPath {
		return nil, fmt.Errorf("%s: socket path %s is too long for a unix socket: use a shorter directory", d.Name, d.Socket)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(cfg.Dir, "config.toml")
	if err := os.WriteFile(path, []byte(cfg.TOML()), 0o600); err != nil {
		return nil, err
	}
	log, err := os.Create(d.logPath)
	if err != nil {
		return nil, err
	}
	level := cfg.LogLevel
	if level == "" {
		level = "warn"
	}
	d.log = log
	d.cmd = exec.Command(cfg.Binary, "--config", path, "--root", filepath.Join(cfg.Dir, "root"),
		"--state", filepath.Join(cfg.Dir, "state"), "--address", d.Socket, "--log-level", level)
	d.cmd.Stdout, d.cmd.Stderr = log, log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // die with the bench
	d.Started = time.Now()
	if err := d.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", cfg.Binary, err)
	}
	go func() { d.waitErr = d.cmd.Wait(); close(d.exited) }()
	return d, nil
}

// PID is the daemon's process id.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// LogPath is the file that receives the daemon's output.
func (d *Daemon) LogPath() string { return d.logPath }

// Exited is closed when the daemon has exited.
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

// Err describes the daemon's exit; call it once Exited is closed.
func (d *Daemon) Err() error {
	return fmt.Errorf("%s exited (%v); see %s", d.Name, d.waitErr, d.logPath)
}

// Ready polls until the socket accepts a connection and returns the time
// since Start.
func (d *Daemon) Ready(ctx context.Context) (time.Duration, error) {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		if c, err := net.Dial("unix", d.Socket); err == nil {
			c.Close()
			return time.Since(d.Started), nil
		}
		select {
		case <-d.exited:
			return 0, fmt.Errorf("before serving: %w", d.Err())
		case <-ctx.Done():
			return 0, fmt.Errorf("%s socket %s: %w", d.Name, d.Socket, ctx.Err())
		case <-tick.C:
		}
	}
}

// StartReady is Start then Ready within timeout; a daemon that does not
// get ready is stopped.
func StartReady(ctx context.Context, cfg Config, timeout time.Duration) (*Daemon, error) {
	d, err := Start(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := d.Ready(ctx); err != nil {
		_ = d.Stop(time.Second)
		return nil, err
	}
	return d, nil
}

// Stop sends SIGTERM, then SIGKILL after grace, and waits for the exit.
// Exiting by the signal is success: containerd's normal way out.
func (d *Daemon) Stop(grace time.Duration) error {
	defer d.log.Close()
	select {
	case <-d.exited:
		return fmt.Errorf("had already stopped: %w", d.Err())
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(grace):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return fmt.Errorf("%s ignored SIGTERM for %s, killed", d.Name, grace)
	}
	var exit *exec.ExitError
	if errors.As(d.waitErr, &exit) && !exit.Exited() {
		return nil
	}
	return d.waitErr
}
