package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-dev/berth/bench/internal/proc"
)

// memReading is the memory of one daemon and of its one shim, with one
// `sleep` container running and idle.
type memReading struct {
	Daemon  string   `json:"daemon"`
	Shim    string   `json:"shim"`
	ShimPID int      `json:"shim_pid"`
	ShimMem proc.Mem `json:"shim_mem"`
	// DaemonMem's VmHWM is the daemon's peak over the whole bench.
	DaemonMem proc.Mem `json:"daemon_mem"`
}

// measureMemory starts one `sleep 1000` container on each daemon, lets
// them settle, reads each shim's and daemon's memory, then removes the
// containers and checks that their shims exit.
func (e *env) measureMemory(ctx context.Context) (_ []memReading, err error) {
	id := "mem"
	var started []*target
	defer func() {
		for _, t := range started {
			if rerr := e.removeContainer(ctx, t, id); rerr != nil {
				err = errors.Join(err, fmt.Errorf("%s: %w", t.Name, rerr))
			}
		}
	}()
	for _, t := range e.targets {
		if _, err := e.ctr(ctx, t, t.runArgs("-d", imageName, id, "sleep", "1000")...); err != nil {
			return nil, fmt.Errorf("%s: %w", t.Name, err)
		}
		started = append(started, t)
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(e.o.settle):
	}
	var rs []memReading
	for _, t := range e.targets {
		r, err := readMemory(t)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.Name, err)
		}
		fmt.Fprintf(os.Stderr, "bench/run: %s: shim %d VmRSS %.1f MiB, Pss %.1f MiB; daemon VmRSS %.1f MiB\n",
			t.Name, r.ShimPID, mib(r.ShimMem.VmRSS), mib(r.ShimMem.Pss), mib(r.DaemonMem.VmRSS))
		rs = append(rs, r)
	}
	return rs, nil
}

// readMemory reads t's daemon and its only shim: a second shim would be
// one leaked by the timed runs.
func readMemory(t *target) (memReading, error) {
	shims, err := t.shims()
	if err != nil {
		return memReading{}, err
	}
	if len(shims) != 1 {
		return memReading{}, fmt.Errorf("%d %s processes of %s with one container running: %+v", len(shims), filepath.Base(t.Shim), t.d.Socket, shims)
	}
	r := memReading{Daemon: t.Name, Shim: filepath.Base(t.Shim), ShimPID: shims[0].PID}
	if r.ShimMem, err = proc.ReadMem(r.ShimPID); err != nil {
		return r, fmt.Errorf("shim: %w", err)
	}
	if r.DaemonMem, err = proc.ReadMem(t.d.PID()); err != nil {
		return r, fmt.Errorf("daemon: %w", err)
	}
	return r, nil
}

// removeContainer kills and deletes task id and its container on t, then
// waits for t's shims to exit.
func (e *env) removeContainer(ctx context.Context, t *target, id string) error {
	ctx = context.WithoutCancel(ctx) // remove even when interrupted
	shims, _ := t.shims()
	if _, err := e.ctr(ctx, t, "tasks", "delete", "-f", id); err != nil {
		return err
	}
	if _, err := e.ctr(ctx, t, "containers", "delete", id); err != nil {
		return err
	}
	for _, p := range shims {
		if !waitGone(p.PID, 10*time.Second) {
			return fmt.Errorf("shim %d still running 10s after its container was deleted", p.PID)
		}
	}
	return nil
}

func mib(kib int64) float64 { return float64(kib) / 1024 }
