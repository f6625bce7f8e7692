package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/berth-dev/berth/bench/internal/daemon"
	"github.com/berth-dev/berth/bench/internal/proc"
)

// namespace is the containerd namespace of every container the bench runs.
const namespace = "bench"

// Timeouts of the daemons' lives and of one ctr command.
const (
	readyTimeout = 30 * time.Second
	stopGrace    = 15 * time.Second
	ctrTimeout   = 2 * time.Minute
)

// target is one daemon with the shim it runs containers with.
type target struct {
	Name string // "berthd" or "containerd"
	// Shim is the shim binary's path; its file name finds the shim
	// processes.
	Shim string
	cfg  daemon.Config
	d    *daemon.Daemon
	// fifoDir and runcRoot keep ctr's FIFOs and the shim's runc state in
	// the target's directory rather than /run/containerd.
	fifoDir, runcRoot string
}

// env is what every measurement shares.
type env struct {
	o       options
	dir     string // WORKDIR/run
	archive string // the image, for ctr images import
	bundle  string // the floor's bundle
	targets []*target
}

// setup builds the image and the floor's bundle, then starts both daemons
// and imports the image into each.
func (e *env) setup(ctx context.Context) error {
	if err := daemon.RemoveTree(e.dir); err != nil { // a kept earlier run
		return err
	}
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return err
	}
	layer, err := buildLayer(e.o.busybox)
	if err != nil {
		return err
	}
	e.archive = filepath.Join(e.dir, "busybox.tar")
	if err := writeArchive(e.archive, layer); err != nil {
		return err
	}
	if e.o.floor {
		if err := e.makeBundle(ctx, layer); err != nil {
			return fmt.Errorf("floor bundle: %w", err)
		}
	}
	e.targets = []*target{
		e.newTarget("berthd", e.o.berthd, filepath.Join(filepath.Dir(e.o.berthd), "berth-shim-runc-v2")),
		e.newTarget("containerd", e.o.containerd, "/usr/bin/containerd-shim-runc-v2"),
	}
	for _, t := range e.targets {
		if err := e.start(ctx, t); err != nil {
			return fmt.Errorf("%s: %w", t.Name, err)
		}
	}
	return nil
}

func (e *env) newTarget(name, binary, shim string) *target {
	dir := filepath.Join(e.dir, name)
	cfg := daemon.Config{Name: name, Binary: binary, Dir: dir}
	if name == "containerd" {
		cfg.Extra = daemon.ContainerdOpt(dir)
	}
	if e.o.debug {
		cfg.LogLevel = "debug"
	}
	return &target{Name: name, Shim: shim, cfg: cfg,
		fifoDir: filepath.Join(dir, "fifo"), runcRoot: filepath.Join(dir, "runc")}
}

// start starts t's daemon and imports the image. The daemon's and the
// shim's binaries are written back first, so that a fresh build's dirty
// page cache does not count as their private memory.
func (e *env) start(ctx context.Context, t *target) error {
	for _, bin := range []string{t.cfg.Binary, t.Shim} {
		if err := proc.FlushFile(bin); err != nil {
			return fmt.Errorf("binary: %w", err)
		}
	}
	d, err := daemon.StartReady(ctx, t.cfg, readyTimeout)
	if err != nil {
		return err
	}
	t.d = d
	_, err = e.ctr(ctx, t, "images", "import", e.archive)
	return err
}

// ctr runs ctr against t's daemon in the bench namespace and returns its
// output.
func (e *env) ctr(ctx context.Context, t *target, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, ctrTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.o.ctr, t.ctrArgs(args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return out.Bytes(), nil
}

// ctrArgs is ctr's command line for args on t.
func (t *target) ctrArgs(args ...string) []string {
	return append([]string{"-a", t.d.Socket, "-n", namespace}, args...)
}

// runArgs is ctr's `run` command with the options that keep FIFOs and
// runc state in t's directory, then args.
func (t *target) runArgs(args ...string) []string {
	return append([]string{"run", "--fifo-dir", t.fifoDir, "--runc-root", t.runcRoot}, args...)
}

// shims returns t's shim processes: those running t's shim binary with
// t's socket as -address.
func (t *target) shims() ([]proc.Process, error) {
	all, err := proc.Find("/proc", filepath.Base(t.Shim))
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(p proc.Process) bool {
		return !p.HasArg(t.d.Socket) && !p.HasArg("unix://"+t.d.Socket)
	}), nil
}

// cleanup removes every container left in the bench namespace, kills
// shims that outlive them, stops the daemons and removes WORKDIR/run
// (unless -keep) and the namespace's empty cgroups.
func (e *env) cleanup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	for _, t := range e.targets {
		if t.d == nil {
			continue
		}
		if err := e.sweep(ctx, t); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", t.Name, err))
		}
		if err := t.d.Stop(stopGrace); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", t.Name, err))
		}
	}
	removeCgroups(namespace)
	if e.o.keep {
		fmt.Fprintf(os.Stderr, "bench/run: keeping %s\n", e.dir)
		return errors.Join(errs...)
	}
	return errors.Join(append(errs, daemon.RemoveTree(e.dir))...)
}

// sweep deletes t's tasks and containers, then kills by pid any shim of t
// still running: none should be.
func (e *env) sweep(ctx context.Context, t *target) error {
	var errs []error
	if out, err := e.ctr(ctx, t, "tasks", "ls", "-q"); err != nil {
		errs = append(errs, err)
	} else {
		for _, id := range strings.Fields(string(out)) {
			_, err := e.ctr(ctx, t, "tasks", "delete", "-f", id)
			errs = append(errs, err)
		}
	}
	if out, err := e.ctr(ctx, t, "containers", "ls", "-q"); err != nil {
		errs = append(errs, err)
	} else {
		for _, id := range strings.Fields(string(out)) {
			_, err := e.ctr(ctx, t, "containers", "delete", id)
			errs = append(errs, err)
		}
	}
	shims, err := t.shims()
	errs = append(errs, err)
	for _, p := range shims {
		if waitGone(p.PID, 5*time.Second) {
			continue
		}
		errs = append(errs, fmt.Errorf("shim %d outlived its containers: killed", p.PID))
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
	}
	return errors.Join(errs...)
}

// waitGone polls until pid has exited (or is a zombie) or timeout passes.
func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := proc.ReadStatus(pid); err != nil {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// removeCgroups removes the namespace's cgroup directories that ctr's
// default cgroup path (/NAMESPACE/ID) leaves empty, in v1 and v2 layouts.
func removeCgroups(ns string) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + ns)
	for _, d := range append(dirs, "/sys/fs/cgroup/"+ns) {
		_ = os.Remove(d) // fails, harmlessly, on a cgroup still in use
	}
}
