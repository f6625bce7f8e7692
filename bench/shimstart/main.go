// Command shimstart measures what a shim costs: the time from running
// `SHIM start` to a shim that answers (connected, Connect RPC returned),
// and the shim's memory while it idles with one running container. It
// measures berth-shim-runc-v2 beside Debian's containerd-shim-runc-v2 1.6,
// both started as the daemon starts them with the legacy bootstrap (runtime
// options on stdin, the socket address printed), alternating, and prints
// the medians. It fails only when a shim cannot be run or measured.
//
//	make build && go run ./bench/shimstart
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

type config struct {
	berth, containerd string
	starts, idles     int
	settle            time.Duration
}

// result is what was measured of one shim.
type result struct {
	name, version string
	printed       []time.Duration // `start` exited, address printed
	starts        []time.Duration // the server answered Connect
	idle          []memory
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "shimstart: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	var c config
	flag.StringVar(&c.berth, "berth", "bin/berth-shim-runc-v2", "berth's shim (build it with: make build)")
	flag.StringVar(&c.containerd, "containerd", "/usr/bin/containerd-shim-runc-v2", "containerd's runc shim to compare with; \"\" measures berth's alone")
	flag.IntVar(&c.starts, "n", 20, "starts of each shim; the median is reported")
	flag.IntVar(&c.idles, "idle", 3, "idle-memory readings of each shim, each with a new shim and container")
	flag.DurationVar(&c.settle, "settle", 2*time.Second, "idle time before each memory reading")
	flag.Parse()
	if flag.NArg() > 0 || c.starts < 1 || c.idles < 1 {
		flag.Usage()
		return errors.New("bad arguments")
	}
	if os.Geteuid() != 0 {
		return errors.New("run as root: the shims mount rootfs and run runc")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	results, err := measure(ctx, c)
	if err != nil {
		return err
	}
	report(os.Stdout, c, results)
	return nil
}

// measure runs both shims, alternating so that neither always runs on a
// warmer machine.
func measure(ctx context.Context, c config) ([]*result, error) {
	var results []*result
	for _, bin := range []string{c.berth, c.containerd} {
		if bin == "" {
			continue
		}
		abs, err := exec.LookPath(bin)
		if err != nil {
			return nil, err
		}
		if abs, err = filepath.Abs(abs); err != nil {
			return nil, err
		}
		results = append(results, &result{name: abs, version: version(abs)})
	}
	dir, err := os.MkdirTemp("", "ss-") // short: sockets live in it
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	e, err := newEnv(dir)
	if err != nil {
		return nil, err
	}
	defer e.stop()
	defer removeCgroups()
	for _, r := range results { // warm the page cache; not counted
		if _, err := startStop(ctx, e, r.name, "warm"); err != nil {
			return nil, err
		}
	}
	for i := range c.starts {
		for _, r := range results {
			took, err := startStop(ctx, e, r.name, fmt.Sprintf("s%d", i))
			if err != nil {
				return nil, err
			}
			r.printed = append(r.printed, took.printed)
			r.starts = append(r.starts, took.ready)
		}
	}
	for i := range c.idles {
		for _, r := range results {
			m, err := idleMemory(ctx, e, r.name, fmt.Sprintf("idle%d", i), c.settle)
			if err != nil {
				return nil, fmt.Errorf("%s: idle memory: %w", r.name, err)
			}
			r.idle = append(r.idle, m)
		}
	}
	return results, nil
}

// startStop measures one start; the bundle has a config.json, which
// containerd's shim reads at start (for its grouping annotations).
func startStop(ctx context.Context, e *env, binary, id string) (timing, error) {
	s, took, err := e.start(ctx, binary, id, idleSpec(id))
	if err != nil {
		return timing{}, err
	}
	return took, s.stop(ctx)
}

// idleMemory reads the memory of a shim serving one running container,
// after settle.
func idleMemory(ctx context.Context, e *env, binary, id string, settle time.Duration) (memory, error) {
	s, _, err := e.start(ctx, binary, id, idleSpec(id))
	if err != nil {
		return memory{}, err
	}
	defer s.stop(ctx)
	if err := s.runIdle(ctx, e); err != nil {
		return memory{}, err
	}
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return memory{}, ctx.Err()
	}
	m, err := readMemory(s.pid)
	if err != nil {
		return memory{}, err
	}
	return m, s.removeIdle(ctx)
}

// version is the first Version line of `binary -v`.
func version(binary string) string {
	out, _ := exec.Command(binary, "-v").Output()
	for line := range strings.Lines(string(out)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Version:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// removeCgroups removes the parent cgroup runc made for the idle
// containers in each hierarchy.
func removeCgroups() {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/shimstart")
	if d := "/sys/fs/cgroup/shimstart"; exists(d) {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		_ = os.Remove(d)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func median[T int64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
