package main

import (
	"context"
	"strings"
	"time"

	"github.com/berth-dev/berth/bench/internal/daemon"
	"github.com/berth-dev/berth/bench/internal/proc"
)

// Timeouts of one daemon's life (and of the registry's).
const (
	readyTimeout = 30 * time.Second
	stopGrace    = 15 * time.Second
)

// daemonConfig is the daemon started in dir, as bench/footprint starts
// them: for containerd the plugins the user disabled and Debian's opt
// plugin moved into dir, for berthd the extra TOML (a literal \n in it is
// a newline, for the command line).
func daemonConfig(kind, binary, dir string, disabled []string, extra string) daemon.Config {
	c := daemon.Config{Name: kind, Binary: binary, Dir: dir}
	if kind == "containerd" {
		c.Disabled, c.Extra = disabled, daemon.ContainerdOpt(dir)
	} else {
		c.Extra = strings.ReplaceAll(extra, `\n`, "\n")
	}
	return c
}

// startDaemon starts binary (of kind) in dir and waits for its socket.
func startDaemon(ctx context.Context, kind, binary, dir string, disabled []string, extra string) (*daemon.Daemon, error) {
	return daemon.StartReady(ctx, daemonConfig(kind, binary, dir, disabled, extra), readyTimeout)
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
	st, err := proc.ReadStatus(pid)
	if err != nil {
		return procSample{}, err
	}
	s := procSample{HWM: st["VmHWM"] << 10, RSS: st["VmRSS"] << 10, Threads: int(st["Threads"])}
	s.CPU, err = proc.CPUTime(pid)
	return s, err
}
