// Command run benchmarks a container's start-to-exit latency on berthd
// beside Debian's containerd 1.6 in the same run. It builds a one-layer
// busybox image offline, imports it into both daemons with the same ctr,
// and times `ctr run --rm IMAGE ID true` on each, rotating berthd,
// containerd and the machine's floor (`runc run` of a bundle with the same
// rootfs) so that drift on the machine spreads over all three. It then
// keeps one `sleep` container running on each daemon and reads the
// memory of its shim and of the daemon. It prints medians, p90s and the
// ratios against the goals, and fails only when something cannot be run
// or measured, never on a missed goal.
//
//	bench/run/run.sh            # builds berthd, its shim and this, then runs it
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/berth-dev/berth/bench/internal/workdir"
)

type options struct {
	berthd, containerd, ctr, runc, busybox string
	workdir, jsonPath                      string
	runs, warmup, trace                    int
	settle                                 time.Duration
	debug, floor, memory, keep             bool
}

func parseFlags() (options, error) {
	var o options
	flag.StringVar(&o.berthd, "berthd", "bin/berthd", "berthd binary; berth-shim-runc-v2 must be beside it")
	flag.StringVar(&o.containerd, "containerd", "/usr/bin/containerd", "containerd 1.6 binary")
	flag.StringVar(&o.ctr, "ctr", "/usr/bin/ctr", "ctr binary, the client of both daemons")
	flag.StringVar(&o.runc, "runc", "/usr/sbin/runc", "runc binary, for the floor")
	flag.StringVar(&o.busybox, "busybox", "/bin/busybox", "static busybox for the image")
	flag.StringVar(&o.workdir, "workdir", "/var/tmp/berth-bench", "the image, bundle and daemon roots go under WORKDIR/run")
	flag.StringVar(&o.jsonPath, "json", "", "also write every run and the summary to this JSON file")
	flag.IntVar(&o.runs, "runs", 20, "timed runs of each daemon (and of the floor)")
	flag.IntVar(&o.warmup, "warmup", 3, "untimed rounds before the timed ones")
	flag.IntVar(&o.trace, "trace", 0, "also run `ctr run --rm` this many times per daemon through a proxy that times each RPC, and print the split")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "idle time between starting the sleep containers and reading memory")
	flag.BoolVar(&o.debug, "debug", false, "run both daemons with --log-level debug (slower; for a breakdown from the log's timestamps)")
	flag.BoolVar(&o.floor, "floor", true, "time `runc run` of the same rootfs")
	flag.BoolVar(&o.memory, "memory", true, "read shim and daemon memory with one container running")
	flag.BoolVar(&o.keep, "keep", false, "keep WORKDIR/run: daemon roots, logs, the image and the bundle")
	flag.Parse()
	if flag.NArg() > 0 || o.runs < 1 || o.warmup < 0 || o.trace < 0 {
		return o, errors.New("bad arguments")
	}
	return o, nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "bench/run: %v\n", err)
		os.Exit(1)
	}
}

func run() (err error) {
	o, err := parseFlags()
	if err != nil {
		flag.Usage()
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("run as root: the daemons run containers")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := workdir.Claim(o.workdir); err != nil {
		return err
	}
	e := &env{o: o, dir: filepath.Join(o.workdir, "run")}
	defer func() {
		if cerr := e.cleanup(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", cerr))
		}
	}()
	if err := e.setup(ctx); err != nil {
		return err
	}
	rep := newReport(o)
	if err := e.measureLatency(ctx, rep); err != nil {
		return err
	}
	if o.trace > 0 {
		if rep.Trace, err = e.measureTrace(ctx); err != nil {
			return err
		}
	}
	if o.memory {
		if rep.Memory, err = e.measureMemory(ctx); err != nil {
			return err
		}
	}
	rep.summarize()
	rep.print(os.Stdout)
	if o.jsonPath == "" {
		return nil
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(o.jsonPath, append(b, '\n'), 0o644)
}
