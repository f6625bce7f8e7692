// Command footprint measures berthd's memory side by side with Debian's
// containerd 1.6 started the same way: idle after start-up, and idle again
// after a mix of namespace and content operations through containerd's
// gRPC API. containerd is measured twice, as Debian ships it and with the
// plugins berth does not have yet disabled, so the comparison is honest
// both ways. It prints a table of the medians over -runs and the ratios,
// and whether berthd meets the idle goal; it fails only when a daemon
// cannot be run or measured, never on a missed goal.
//
//	go build -o bin/ ./cmd/berthd && go run ./bench/footprint
package main

import (
	"context"
	"encoding/json"
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

	"github.com/berth-dev/berth/bench/internal/daemon"
	"github.com/berth-dev/berth/bench/internal/proc"
)

// goalMiB is berthd's idle VmRSS goal.
const goalMiB = 15

// Timeouts of one measurement.
const (
	readyTimeout = 30 * time.Second
	opsTimeout   = 5 * time.Minute
	stopGrace    = 10 * time.Second
)

type options struct {
	berthd, containerd string
	ops, runs          int
	settle             time.Duration
	jsonPath           string
	keep               bool
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "footprint: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	var o options
	flag.StringVar(&o.berthd, "berthd", "bin/berthd", "berthd binary (build it with: go build -o bin/ ./cmd/...)")
	flag.StringVar(&o.containerd, "containerd", "/usr/bin/containerd", "containerd binary to compare with; \"\" measures berthd alone")
	flag.IntVar(&o.ops, "ops", 1000, "namespace/content operations between the two idle readings")
	flag.IntVar(&o.runs, "runs", 1, "measure each daemon this many times, alternating, and report medians")
	flag.DurationVar(&o.settle, "settle", 3*time.Second, "idle time before each memory reading")
	flag.StringVar(&o.jsonPath, "json", "", "also write every run and the medians to this JSON file")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp dir with each daemon's config, root and log")
	flag.Parse()
	if flag.NArg() > 0 || o.ops < 0 || o.runs < 1 {
		flag.Usage()
		return errors.New("bad arguments")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ts := targets(o.berthd, o.containerd)
	versions, err := prepare(ts)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "footprint-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintf(os.Stderr, "footprint: keeping %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	results, err := measureAll(ctx, ts, tmp, o)
	if err != nil {
		return err
	}
	rep := newReport(o, ts, versions, results)
	rep.print(os.Stdout)
	if o.jsonPath != "" {
		return rep.writeJSON(o.jsonPath)
	}
	return nil
}

// prepare checks each binary, flushes its page cache (see proc.FlushFile) and
// returns its --version line.
func prepare(ts []target) (map[string]string, error) {
	versions := make(map[string]string)
	for _, t := range ts {
		if _, ok := versions[t.Binary]; ok {
			continue
		}
		if err := proc.FlushFile(t.Binary); err != nil {
			return nil, fmt.Errorf("%s binary: %w", t.Name, err)
		}
		out, err := exec.Command(t.Binary, "--version").Output()
		if err != nil {
			return nil, fmt.Errorf("%s --version: %w", t.Binary, err)
		}
		versions[t.Binary] = strings.TrimSpace(string(out))
	}
	return versions, nil
}

// measureAll measures every target o.runs times, alternating targets so
// that drift on the machine spreads over all of them. The comparable
// target's disabled plugins are derived from the first run of the others.
func measureAll(ctx context.Context, ts []target, tmp string, o options) ([][]result, error) {
	results := make([][]result, len(ts))
	for r := range o.runs {
		for i := range ts {
			if ts[i].Comparable && ts[i].Disabled == nil {
				ts[i].Disabled = comparableDisabled(results[0][0].Loaded, slices.Concat(results[1][0].Loaded, results[1][0].Failed))
			}
			t := ts[i]
			dir := filepath.Join(tmp, fmt.Sprintf("%d.%d", i, r))
			res, err := measure(ctx, t, dir, o)
			if err != nil {
				return nil, fmt.Errorf("%s, run %d: %w", t.Name, r+1, err)
			}
			results[i] = append(results[i], res)
		}
	}
	return results, nil
}

// result is one measurement of one daemon.
type result struct {
	Loaded   []string      `json:"plugins_loaded"`
	Failed   []string      `json:"plugins_failed,omitempty"`
	Ready    time.Duration `json:"ready_ns"`
	Idle     proc.Mem      `json:"idle_after_start"`
	OpsWall  time.Duration `json:"ops_wall_ns"`
	AfterOps proc.Mem      `json:"idle_after_ops"`
	MetaDB   int64         `json:"meta_db_bytes"`
}

// measure starts the daemon in dir, takes the idle reading, runs the
// operations, takes the second reading and stops the daemon. No client is
// connected during either reading.
func measure(ctx context.Context, t target, dir string, o options) (res result, err error) {
	p, err := daemon.Start(t.daemon(dir))
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := p.Stop(stopGrace); serr != nil && err == nil {
			err = fmt.Errorf("stop: %w", serr)
		}
	}()
	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if res.Ready, err = p.Ready(rctx); err != nil {
		return res, err
	}
	if res.Loaded, res.Failed, err = introspect(rctx, p.Socket); err != nil {
		return res, err
	}
	if res.Idle, err = settleAndRead(ctx, p, o.settle); err != nil {
		return res, err
	}
	if res.OpsWall, err = timeOps(ctx, p.Socket, o.ops); err != nil {
		return res, err
	}
	if res.AfterOps, err = settleAndRead(ctx, p, o.settle); err != nil {
		return res, err
	}
	res.MetaDB = metaDBSize(dir)
	return res, nil
}

// introspect checks the daemon answers and lists its plugins.
func introspect(ctx context.Context, socket string) (loaded, failed []string, err error) {
	c, err := dial(socket)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	if err := c.version(ctx); err != nil {
		return nil, nil, fmt.Errorf("version: %w", err)
	}
	if loaded, failed, err = c.plugins(ctx); err != nil {
		return nil, nil, fmt.Errorf("introspection: %w", err)
	}
	return loaded, failed, nil
}

// timeOps runs n operations on a fresh connection, closed before return.
func timeOps(ctx context.Context, socket string, n int) (time.Duration, error) {
	c, err := dial(socket)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, opsTimeout)
	defer cancel()
	if err := c.version(ctx); err != nil { // connect outside the timed part
		return 0, err
	}
	t0 := time.Now()
	if err := runOps(ctx, c, n); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

func settleAndRead(ctx context.Context, p *daemon.Daemon, settle time.Duration) (proc.Mem, error) {
	select {
	case <-ctx.Done():
		return proc.Mem{}, ctx.Err()
	case <-p.Exited():
		return proc.Mem{}, p.Err()
	case <-time.After(settle):
	}
	return proc.ReadMem(p.PID())
}

// writeJSON writes the report to path.
func (r *report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
