package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/bench/internal/proc"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// floorName is the floor's row in the report.
const floorName = "runc run (floor)"

// sample is one timed container run.
type sample struct {
	// Wall is from starting the client (ctr, or runc for the floor) to
	// its exit.
	Wall time.Duration `json:"wall_ns"`
	// ClientCPU is the client's user+system time, its reaped children's
	// included (the floor's runc init).
	ClientCPU time.Duration `json:"client_cpu_ns"`
	// DaemonCPU is the daemon's CPU time during the run, in steps of
	// 10 ms; shims are not included.
	DaemonCPU time.Duration `json:"daemon_cpu_ns,omitempty"`
	// MachineBusy is the share of all CPUs busy during the run, the
	// run's own processes included: well above what an idle machine
	// shows, other load slowed the run.
	MachineBusy float64 `json:"machine_cpu_busy"`
}

// mode is one way of running the container: on a daemon, or the floor.
type mode struct {
	name string
	run  func(ctx context.Context, round int) (sample, error)
}

// modes are the daemons' runs and the floor, in report order.
func (e *env) modes() []mode {
	var ms []mode
	for _, t := range e.targets {
		ms = append(ms, mode{t.Name, func(ctx context.Context, round int) (sample, error) {
			return e.timeCtrRun(ctx, t, fmt.Sprintf("%s-%d", t.Name, round))
		}})
	}
	if e.o.floor {
		ms = append(ms, mode{floorName, func(ctx context.Context, round int) (sample, error) {
			return e.timeFloor(ctx, fmt.Sprintf("floor-%d", round))
		}})
	}
	return ms
}

// measureLatency runs warm-up rounds then o.runs timed rounds. Each round
// runs every mode once, starting one further along each time, so that no
// mode always follows the same one and drift spreads over all.
func (e *env) measureLatency(ctx context.Context, rep *report) error {
	ms := e.modes()
	for _, m := range ms {
		rep.Latency = append(rep.Latency, &series{Name: m.name})
	}
	rep.LoadBefore = loadavg()
	for r := range e.o.warmup + e.o.runs {
		var line []string
		for k := range ms {
			i := (k + r) % len(ms)
			s, err := ms[i].run(ctx, r)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", ms[i].name, r+1, err)
			}
			line = append(line, fmt.Sprintf("%s %.0f ms", ms[i].name, msec(s.Wall)))
			if r >= e.o.warmup {
				rep.Latency[i].Runs = append(rep.Latency[i].Runs, s)
			}
		}
		what := "run"
		if r < e.o.warmup {
			what = "warm-up"
		}
		fmt.Fprintf(os.Stderr, "bench/run: %s %d: %s\n", what, r+1, strings.Join(line, ", "))
	}
	rep.LoadAfter = loadavg()
	return nil
}

// timeCtrRun times `ctr run --rm IMAGE id true` on t.
func (e *env) timeCtrRun(ctx context.Context, t *target, id string) (sample, error) {
	cpu0, err := proc.CPUTime(t.d.PID())
	if err != nil {
		return sample{}, err
	}
	s, err := timeCommand(ctx, e.o.ctr, t.ctrArgs(t.runArgs("--rm", imageName, id, "true")...)...)
	if err != nil {
		return s, err
	}
	cpu1, err := proc.CPUTime(t.d.PID())
	s.DaemonCPU = cpu1 - cpu0
	return s, err
}

// timeFloor times `runc run` of the floor's bundle: what every daemon's
// run of the container costs at least (create, start, wait, delete in one
// process, no image, snapshot, shim or RPC).
func (e *env) timeFloor(ctx context.Context, id string) (sample, error) {
	return timeCommand(ctx, e.o.runc, "--root", filepath.Join(e.dir, "floor", "runc"), "run", "--bundle", e.bundle, id)
}

// timeCommand runs a command with stdin from /dev/null and times it from
// start to exit; it must exit 0.
func timeCommand(ctx context.Context, name string, args ...string) (sample, error) {
	ctx, cancel := context.WithTimeout(ctx, ctrTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	busy0, total0 := cpuTicks()
	t0 := time.Now()
	err := cmd.Run()
	wall := time.Since(t0)
	busy1, total1 := cpuTicks()
	if err != nil {
		return sample{}, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	s := sample{Wall: wall, ClientCPU: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	if total1 > total0 {
		s.MachineBusy = float64(busy1-busy0) / float64(total1-total0)
	}
	return s, nil
}

// cpuTicks returns the machine's busy and total CPU ticks from /proc/stat.
func cpuTicks() (busy, total int64) {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	fs := strings.Fields(line)
	for i, f := range fs[min(1, len(fs)):] {
		if i >= 8 { // guest time is already in user
			break
		}
		n, _ := strconv.ParseInt(f, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// makeBundle writes the floor's bundle: the layer unpacked as rootfs and
// runc's default spec, without a terminal, running true.
func (e *env) makeBundle(ctx context.Context, layer []byte) error {
	e.bundle = filepath.Join(e.dir, "floor", "bundle")
	if err := os.MkdirAll(e.bundle, 0o755); err != nil {
		return err
	}
	if err := unpackLayer(layer, filepath.Join(e.bundle, "rootfs")); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, e.o.runc, "spec")
	cmd.Dir = e.bundle
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("runc spec: %w: %s", err, out)
	}
	path := filepath.Join(e.bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if b, err = floorSpec(b); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// floorSpec adjusts `runc spec`'s config: no terminal, args ["true"].
func floorSpec(config []byte) ([]byte, error) {
	var spec rspec.Spec
	if err := json.Unmarshal(config, &spec); err != nil {
		return nil, fmt.Errorf("runc spec's config.json: %w", err)
	}
	if spec.Process == nil {
		return nil, fmt.Errorf("runc spec's config.json has no process")
	}
	spec.Process.Terminal = false
	spec.Process.Args = []string{"true"}
	return json.MarshalIndent(&spec, "", "\t")
}

// loadavg is the first three fields of /proc/loadavg.
func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	fs := strings.Fields(string(b))
	if len(fs) < 3 {
		return ""
	}
	return strings.Join(fs[:3], " ")
}

func msec(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
