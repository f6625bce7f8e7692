package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/bench/internal/daemon"
)

// mode is one way of pulling: a daemon and the client that asks it.
type mode struct {
	Name   string
	Daemon string // "berthd" or "containerd"
	Client string // "ctr" or "berth"
}

var allModes = []mode{
	{Name: "containerd", Daemon: "containerd", Client: "ctr"},
	{Name: "berthd", Daemon: "berthd", Client: "berth"},
	{Name: "berthd-ctr", Daemon: "berthd", Client: "ctr"},
}

// pullResult is one cold pull.
type pullResult struct {
	Wall       time.Duration `json:"wall_ns"`
	PeakRSS    int64         `json:"daemon_peak_rss_bytes"` // VmHWM after the pull
	DaemonCPU  time.Duration `json:"daemon_cpu_ns"`         // during the pull
	ClientCPU  time.Duration `json:"client_cpu_ns"`
	Threads    int           `json:"daemon_threads"`
	Snapshots  int           `json:"snapshots"`
	LoadBefore string        `json:"loadavg_before"`
	// MachineBusy is the share of all CPUs busy during the pull, this
	// pull's processes included: near 1, other load on the machine slowed
	// the pull.
	MachineBusy float64 `json:"machine_cpu_busy"`
	// From berth pull's progress lines (mode berthd only): when the last
	// layer finished downloading, and when the last one was unpacked.
	Downloaded time.Duration `json:"last_download_done_ns,omitempty"`
	Unpacked   time.Duration `json:"last_unpacked_ns,omitempty"`
	// Events are berth pull's layer progress lines, timed: "1.234s layer
	// 0123456789ab done".
	Events []string `json:"layer_events,omitempty"`
}

// env is what every measurement shares.
type env struct {
	o       options
	reg     *registry
	hosts   string // hosts dir for berth pull
	runDir  string
	layouts map[string]string // image key -> OCI layout dir
	failed  bool              // a measurement failed: keep its root
}

// coldStart writes back dirty pages (and drops the page cache with
// -drop-caches), then warms what must not count: the registry's blobs of
// img, the client binaries and extra.
func (e *env) coldStart(img *image, extra ...string) error {
	if err := settle(e.o.dropCaches); err != nil {
		return fmt.Errorf("drop caches (run as root): %w", err)
	}
	paths := append([]string{e.o.ctr, e.o.berth}, extra...)
	for _, d := range append(img.Layers, img.Config, img.Manifest) {
		paths = append(paths, e.reg.blobFile(d.Digest))
	}
	return warm(paths...)
}

// measurePull pulls img once with m on a fresh daemon root.
func (e *env) measurePull(ctx context.Context, m mode, img *image, run int) (res pullResult, err error) {
	dir := filepath.Join(e.runDir, fmt.Sprintf("%s-%s-%d", m.Name, img.Key, run))
	if err := daemon.RemoveTree(dir); err != nil {
		return res, err
	}
	if err := e.coldStart(img); err != nil {
		return res, err
	}
	binary := e.o.containerd
	if m.Daemon == "berthd" {
		binary = e.o.berthd
	}
	d, err := startDaemon(ctx, m.Daemon, binary, dir, e.o.disabled, e.o.berthdConfig)
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := d.Stop(stopGrace); serr != nil && err == nil {
			err = serr
		}
		// A root holds the whole image twice: keep only a failed one, for
		// its daemon.log.
		if err == nil {
			err = daemon.RemoveTree(dir)
		}
	}()
	before, err := readProc(d.PID())
	if err != nil {
		return res, err
	}
	res.LoadBefore = loadavg()
	busy0, total0 := cpuTicks()
	if err := e.runClient(ctx, m, d, img, &res); err != nil {
		return res, err
	}
	busy1, total1 := cpuTicks()
	if total1 > total0 {
		res.MachineBusy = float64(busy1-busy0) / float64(total1-total0)
	}
	after, err := readProc(d.PID())
	if err != nil {
		return res, err
	}
	res.PeakRSS, res.DaemonCPU, res.Threads = after.HWM, after.CPU-before.CPU, after.Threads
	if res.Snapshots, err = e.countSnapshots(ctx, d); err != nil {
		return res, err
	}
	if res.Snapshots < len(img.Layers) {
		return res, fmt.Errorf("%s: %d committed snapshots after pulling %d layers: not unpacked", m.Name, res.Snapshots, len(img.Layers))
	}
	return res, nil
}

// runClient runs the pull command and times it from exec to exit.
func (e *env) runClient(ctx context.Context, m mode, d *daemon.Daemon, img *image, res *pullResult) error {
	ref := e.reg.ref(img)
	var cmd *exec.Cmd
	if m.Client == "ctr" {
		cmd = exec.CommandContext(ctx, e.o.ctr, "-a", d.Socket, "-n", "default", "images", "pull", "--plain-http", ref)
	} else {
		cmd = exec.CommandContext(ctx, e.o.berth, "--address", d.Socket, "-n", "default", "pull", "--hosts-dir", e.hosts, ref)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	var lines []timedLine
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines = append(lines, timedLine{time.Since(t0), sc.Text()})
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	<-done
	err = cmd.Wait()
	res.Wall = time.Since(t0)
	if err != nil {
		return fmt.Errorf("%s: %s: %w: %s%s", m.Name, strings.Join(cmd.Args, " "), err, stderr.Bytes(), tail(lines))
	}
	res.ClientCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if m.Client == "berth" {
		res.Downloaded, res.Unpacked, res.Events = layerPhases(lines)
	}
	return nil
}

type timedLine struct {
	at   time.Duration
	text string
}

func tail(lines []timedLine) string {
	var b strings.Builder
	for _, l := range lines[max(0, len(lines)-5):] {
		b.WriteString("\n  " + l.text)
	}
	return b.String()
}

// layerPhases reads berth pull's progress lines ("layer SHORT EVENT ...")
// and returns when the last layer download ended, when the last layer was
// unpacked, and every layer's events with their times.
func layerPhases(lines []timedLine) (downloaded, unpacked time.Duration, events []string) {
	for _, l := range lines {
		fs := strings.Fields(l.text)
		if len(fs) < 3 || fs[0] != "layer" {
			continue
		}
		events = append(events, fmt.Sprintf("%.3fs layer %s %s", l.at.Seconds(), fs[1], fs[2]))
		switch fs[2] {
		case "done", "exists":
			downloaded = max(downloaded, l.at)
		case "unpacked":
			unpacked = max(unpacked, l.at)
		}
	}
	return downloaded, unpacked, events
}

// countSnapshots counts the committed overlayfs snapshots the daemon has.
func (e *env) countSnapshots(ctx context.Context, d *daemon.Daemon) (int, error) {
	out, err := exec.CommandContext(ctx, e.o.ctr, "-a", d.Socket, "-n", "default", "snapshots", "--snapshotter", "overlayfs", "ls").Output()
	if err != nil {
		return 0, fmt.Errorf("ctr snapshots ls on %s: %w", d.Name, err)
	}
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if fs := strings.Fields(l); len(fs) >= 2 && fs[len(fs)-1] == "Committed" {
			n++
		}
	}
	return n, nil
}

// cpuTicks returns the machine's busy and total CPU ticks from /proc/stat.
func cpuTicks() (busy, total int64) {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	fs := strings.Fields(line)
	for i, f := range fs[1:] {
		n, _ := strconv.ParseInt(f, 10, 64)
		if i >= 8 { // guest time is already in user
			break
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	fs := strings.Fields(string(b))
	if len(fs) < 3 {
		return ""
	}
	return strings.Join(fs[:3], " ")
}

// measureFloor is the machine's floor for img: GNU tar gunzips and untars
// its layers two at a time, each into a fresh dir on the work filesystem,
// from blobs in the page cache.
func (e *env) measureFloor(ctx context.Context, img *image, run int) (time.Duration, error) {
	layout := e.layouts[img.Key]
	var blobs []string
	for _, l := range img.Layers {
		blobs = append(blobs, blobPath(layout, l.Digest))
	}
	return e.timeLayers(ctx, img, "floor", run, 2, append([]string{e.o.tar, "/usr/bin/gzip"}, blobs...),
		func(ctx context.Context, i int, dir string) error {
			out, err := exec.CommandContext(ctx, e.o.tar, "-xzf", blobs[i], "-C", dir).CombinedOutput()
			if err != nil {
				return fmt.Errorf("tar -xzf %s: %w: %s", blobs[i], err, out)
			}
			return nil
		})
}

// timeLayers times fn over every layer of img, par at a time, each into a
// fresh dir, after a cold start that warms the extra files.
func (e *env) timeLayers(ctx context.Context, img *image, what string, run, par int, warmFiles []string,
	fn func(ctx context.Context, i int, dir string) error) (time.Duration, error) {
	dir := filepath.Join(e.runDir, fmt.Sprintf("%s-%s-%d", what, img.Key, run))
	if err := daemon.RemoveTree(dir); err != nil {
		return 0, err
	}
	for i := range img.Layers {
		if err := os.MkdirAll(filepath.Join(dir, fmt.Sprint(i)), 0o755); err != nil {
			return 0, err
		}
	}
	defer os.RemoveAll(dir)
	if err := e.coldStart(img, warmFiles...); err != nil {
		return 0, err
	}
	t0 := time.Now()
	err := forEach(len(img.Layers), par, func(i int) error {
		return fn(ctx, i, filepath.Join(dir, fmt.Sprint(i)))
	})
	return time.Since(t0), err
}

// forEach runs fn(0..n-1), par at a time, and returns the first error.
func forEach(n, par int, fn func(int) error) error {
	errs := make([]error, n)
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = fn(i)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
