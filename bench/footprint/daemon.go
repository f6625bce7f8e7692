package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// target is one daemon configuration measured side by side with the others.
type target struct {
	Name   string `json:"name"`
	Binary string `json:"binary"`
	// Extra is config text after the [grpc] table: it keeps containerd's
	// opt plugin inside the temp dir.
	Extra string `json:"-"`
	// Comparable marks the containerd run restricted to berthd's plugins;
	// Disabled, its disabled_plugins, is derived once both others ran.
	Comparable bool     `json:"comparable,omitempty"`
	Disabled   []string `json:"disabled_plugins,omitempty"`
}

// targets returns the daemons in table order: berthd, containerd as
// Debian ships it, and containerd with berthd's plugins only; containerd
// is left out when its path is "". measureAll relies on this order.
func targets(berthd, containerd string) []target {
	if containerd == "" {
		return []target{{Name: "berthd", Binary: berthd}}
	}
	// Debian's /etc/containerd/config.toml sets the opt plugin's path
	// under /var/lib/containerd; the bench keeps it in the temp dir.
	opt := "[plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{dir}/opt\"\n"
	return []target{
		{Name: "berthd", Binary: berthd},
		{Name: "containerd", Binary: containerd, Extra: opt},
		{Name: "containerd (comparable plugins)", Binary: containerd, Extra: opt, Comparable: true},
	}
}

// comparableDisabled is every containerd plugin berthd does not load, so
// that the restricted containerd serves what berthd serves. Two kinds stay
// although berthd has no plugin of that name: containerd's
// io.containerd.service.v1.X-service, the local half of each gRPC service X
// berthd serves, and the native snapshotter when berthd loads no
// snapshotter containerd has, since containerd's bolt plugin refuses to
// start without one.
func comparableDisabled(berthd, containerd []string) []string {
	keep := make(map[string]bool)
	for _, p := range berthd {
		keep[p] = true
		if svc, ok := strings.CutPrefix(p, "io.containerd.grpc.v1."); ok {
			keep["io.containerd.service.v1."+svc+"-service"] = true
		}
	}
	hasSnapshotter := slices.ContainsFunc(containerd, func(p string) bool {
		return keep[p] && strings.HasPrefix(p, "io.containerd.snapshotter.v1.")
	})
	if !hasSnapshotter {
		keep["io.containerd.snapshotter.v1.native"] = true
	}
	var disabled []string
	for _, p := range containerd {
		if !keep[p] && !slices.Contains(disabled, p) {
			disabled = append(disabled, p)
		}
	}
	slices.Sort(disabled)
	return disabled
}

// config is the config file given to the daemon running in dir.
func (t target) config(dir string) string {
	var b strings.Builder
	b.WriteString("version = 2\n")
	if len(t.Disabled) > 0 {
		b.WriteString("disabled_plugins = [\n")
		for _, p := range t.Disabled {
			fmt.Fprintf(&b, "  %q,\n", p)
		}
		b.WriteString("]\n")
	}
	fmt.Fprintf(&b, "\n[grpc]\n  address = %q\n\n", filepath.Join(dir, "d.sock"))
	b.WriteString(strings.ReplaceAll(t.Extra, "{dir}", dir))
	return b.String()
}

// process is a daemon started by the bench in its own temp dir.
type process struct {
	dir     string
	socket  string
	cmd     *exec.Cmd
	log     *os.File
	started time.Time
	exited  chan struct{}
	waitErr error
}

// start writes the config and starts the daemon with the flags both
// berthd and containerd take: --config --root --state --address
// --log-level.
func start(t target, dir string) (*process, error) {
	p := &process{dir: dir, socket: filepath.Join(dir, "d.sock"), exited: make(chan struct{})}
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(t.config(dir)), 0o600); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		return nil, err
	}
	p.log = log
	p.cmd = exec.Command(t.Binary, "--config", cfg, "--root", filepath.Join(dir, "root"),
		"--state", filepath.Join(dir, "state"), "--address", p.socket, "--log-level", "warn")
	p.cmd.Stdout, p.cmd.Stderr = log, log
	// Die with the bench rather than outlive it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", t.Binary, err)
	}
	go func() { p.waitErr = p.cmd.Wait(); close(p.exited) }()
	return p, nil
}

// pid is the daemon's process id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// waitSocket polls until the socket accepts a connection and returns the
// time since start.
func (p *process) waitSocket(ctx context.Context) (time.Duration, error) {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		if c, err := net.Dial("unix", p.socket); err == nil {
			c.Close()
			return time.Since(p.started), nil
		}
		select {
		case <-p.exited:
			return 0, fmt.Errorf("daemon exited before serving (%v); see %s", p.waitErr, p.log.Name())
		case <-ctx.Done():
			return 0, fmt.Errorf("socket %s: %w", p.socket, ctx.Err())
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM, then SIGKILL after grace, and waits for the exit.
func (p *process) stop(grace time.Duration) error {
	defer p.log.Close()
	select {
	case <-p.exited:
		return fmt.Errorf("daemon had already exited: %v; see %s", p.waitErr, p.log.Name())
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("daemon ignored SIGTERM for %s, killed", grace)
	}
	var exit *exec.ExitError
	if errors.As(p.waitErr, &exit) && !exit.Exited() {
		return nil // ended by the signal: containerd's normal way out
	}
	return p.waitErr
}

// metaDBSize is the size of the daemon's bbolt file, which both keep at
// root/io.containerd.metadata.v1.bolt/meta.db and map into memory.
func (p *process) metaDBSize() int64 {
	fi, err := os.Stat(filepath.Join(p.dir, "root", "io.containerd.metadata.v1.bolt", "meta.db"))
	if err != nil {
		return 0
	}
	return fi.Size()
}
