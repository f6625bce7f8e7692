package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Timeouts of one daemon's life.
const (
	readyTimeout = 30 * time.Second
	stopGrace    = 15 * time.Second
)

// daemon is berthd or containerd started by the bench on a root of its
// own, as bench/footprint starts them: the same flags, a minimal config.
type daemon struct {
	kind    string // "berthd" or "containerd"
	dir     string
	socket  string
	cmd     *exec.Cmd
	log     *os.File
	exited  chan struct{}
	waitErr error
}

// daemonConfig is the config given to a daemon in dir: version 2, the
// socket; for containerd Debian's opt plugin moved into dir and the
// plugins the user disabled, for berthd the extra TOML (a literal \n in it
// is a newline, for the command line).
func daemonConfig(kind, dir string, disabled []string, extra string) string {
	var b strings.Builder
	b.WriteString("version = 2\n")
	if kind == "containerd" && len(disabled) > 0 {
		b.WriteString("disabled_plugins = [\n")
		for _, p := range disabled {
			fmt.Fprintf(&b, "  %q,\n", p)
		}
		b.WriteString("]\n")
	}
	fmt.Fprintf(&b, "\n[grpc]\n  address = %q\n", filepath.Join(dir, "d.sock"))
	if kind == "containerd" {
		fmt.Fprintf(&b, "\n[plugins.\"io.containerd.internal.v1.opt\"]\n  path = %q\n", filepath.Join(dir, "opt"))
	}
	if kind == "berthd" && extra != "" {
		b.WriteString("\n" + strings.ReplaceAll(extra, `\n`, "\n") + "\n")
	}
	return b.String()
}

// startDaemon starts binary (of kind) in dir and waits for its socket.
func startDaemon(ctx context.Context, kind, binary, dir string, disabled []string, extra string) (*daemon, error) {
	d := &daemon{kind: kind, dir: dir, socket: filepath.Join(dir, "d.sock"), exited: make(chan struct{})}
	if len(d.socket) > 107 {
		return nil, fmt.Errorf("socket path %s is too long for a unix socket: use a shorter -workdir", d.socket)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(daemonConfig(kind, dir, disabled, extra)), 0o600); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		return nil, err
	}
	d.log = log
	d.cmd = exec.Command(binary, "--config", cfg, "--root", filepath.Join(dir, "root"),
		"--state", filepath.Join(dir, "state"), "--address", d.socket, "--log-level", "warn")
	d.cmd.Stdout, d.cmd.Stderr = log, log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // die with the bench
	if err := d.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	go func() { d.waitErr = d.cmd.Wait(); close(d.exited) }()
	if err := d.waitSocket(ctx); err != nil {
		_ = d.stop()
		return nil, err
	}
	return d, nil
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

func (d *daemon) waitSocket(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if c, err := net.Dial("unix", d.socket); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-d.exited:
			return fmt.Errorf("%s exited before serving (%v); see %s", d.kind, d.waitErr, d.log.Name())
		case <-ctx.Done():
			return fmt.Errorf("%s socket %s: %w", d.kind, d.socket, ctx.Err())
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM, then SIGKILL after stopGrace, and waits.
func (d *daemon) stop() error {
	defer d.log.Close()
	select {
	case <-d.exited:
		return fmt.Errorf("%s had already exited: %v; see %s", d.kind, d.waitErr, d.log.Name())
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(stopGrace):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return fmt.Errorf("%s ignored SIGTERM for %s, killed", d.kind, stopGrace)
	}
	var exit *exec.ExitError
	if errors.As(d.waitErr, &exit) && !exit.Exited() {
		return nil // ended by the signal: containerd's way out
	}
	return d.waitErr
}

// procSample is what /proc says of a process.
type procSample struct {
	HWM     int64         // VmHWM, bytes
	RSS     int64         // VmRSS, bytes
	CPU     time.Duration // utime + stime
	Threads int
}

// readProc reads VmHWM, VmRSS and Threads from /proc/pid/status and the CPU
// time from /proc/pid/stat.
func readProc(pid int) (procSample, error) {
	var s procSample
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fs[0], 10, 64)
		switch k {
		case "VmHWM":
			s.HWM = n << 10
		case "VmRSS":
			s.RSS = n << 10
		case "Threads":
			s.Threads = int(n)
		}
	}
	if s.CPU, err = cpuTime(pid); err != nil {
		return s, err
	}
	return s, sc.Err()
}

// cpuTime is utime+stime of pid, from /proc/pid/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15.
	i := strings.LastIndexByte(string(b), ')')
	fs := strings.Fields(string(b[i+1:]))
	if len(fs) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, _ := strconv.ParseInt(fs[11], 10, 64)
	st, _ := strconv.ParseInt(fs[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz, nil
}

// unmountUnder unmounts every mount at or below dir, deepest first: a
// daemon killed mid-unpack can leave temporary mounts behind.
func unmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		fs := strings.Fields(line)
		if len(fs) < 5 {
			continue
		}
		p := unescapeMount(fs[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeTree unmounts what is left below dir and removes it.
func removeTree(dir string) error {
	if err := unmountUnder(dir); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}
