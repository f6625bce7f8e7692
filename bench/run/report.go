package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/berth-dev/berth/bench/internal/proc"
)

// The goals of the issue.
const (
	goalLatency = 0.4 // berthd's median start-to-exit over containerd's
	goalShimRSS = 0.5 // berthd's shim VmRSS over containerd-shim-runc-v2's
)

type report struct {
	Date       string            `json:"date"`
	Machine    machine           `json:"machine"`
	Versions   map[string]string `json:"versions"`
	Command    string            `json:"command"`
	Runs       int               `json:"runs"`
	Warmup     int               `json:"warmup_rounds"`
	LoadBefore string            `json:"loadavg_before"`
	LoadAfter  string            `json:"loadavg_after"`
	Latency    []*series         `json:"latency"`
	Memory     []memReading      `json:"memory,omitempty"`
	Trace      []*traceSeries    `json:"trace,omitempty"`
	Summary    summary           `json:"summary"`
}

type machine struct {
	CPUs   int    `json:"cpus"`
	Kernel string `json:"kernel"`
	Model  string `json:"cpu_model"`
}

// series is every timed run of one mode and its statistics.
type series struct {
	Name      string        `json:"name"`
	Runs      []sample      `json:"runs"`
	Median    time.Duration `json:"median_ns"`
	P90       time.Duration `json:"p90_ns"`
	Min       time.Duration `json:"min_ns"`
	Max       time.Duration `json:"max_ns"`
	ClientCPU time.Duration `json:"median_client_cpu_ns"`
	DaemonCPU time.Duration `json:"median_daemon_cpu_ns"`
	Busy      float64       `json:"median_machine_cpu_busy"`
}

// summary holds the ratios; a ratio is 0 when either side was not
// measured.
type summary struct {
	BerthdOverContainerd float64 `json:"berthd_over_containerd"`
	BerthdOverFloor      float64 `json:"berthd_over_floor,omitempty"`
	ContainerdOverFloor  float64 `json:"containerd_over_floor,omitempty"`
	ShimRSS              float64 `json:"shim_rss_berthd_over_containerd,omitempty"`
	ShimPSS              float64 `json:"shim_pss_berthd_over_containerd,omitempty"`
	DaemonRSS            float64 `json:"daemon_rss_berthd_over_containerd,omitempty"`
	MetLatency           bool    `json:"met_latency_goal"`
	MetShimRSS           bool    `json:"met_shim_rss_goal"`
}

func newReport(o options) *report {
	r := &report{
		Date:    time.Now().UTC().Format(time.RFC3339),
		Machine: machine{CPUs: runtime.NumCPU(), Kernel: firstLine("uname", "-r"), Model: cpuModel()},
		Versions: map[string]string{
			"berthd":     firstLine(o.berthd, "--version"),
			"containerd": firstLine(o.containerd, "--version"),
			"ctr":        firstLine(o.ctr, "--version"),
			"runc":       firstLine(o.runc, "--version"),
		},
		Command: fmt.Sprintf("ctr -a SOCKET -n %s run --fifo-dir DIR --runc-root DIR --rm %s ID true", namespace, imageName),
		Runs:    o.runs,
		Warmup:  o.warmup,
	}
	return r
}

func firstLine(bin string, args ...string) string {
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// summarize computes each series' statistics and the ratios.
func (r *report) summarize() {
	for _, s := range r.Latency {
		s.stats()
	}
	get := func(name string) time.Duration {
		for _, s := range r.Latency {
			if s.Name == name {
				return s.Median
			}
		}
		return 0
	}
	b, c, f := get("berthd"), get("containerd"), get(floorName)
	r.Summary.BerthdOverContainerd = ratio(int64(b), int64(c))
	r.Summary.BerthdOverFloor = ratio(int64(b), int64(f))
	r.Summary.ContainerdOverFloor = ratio(int64(c), int64(f))
	r.Summary.MetLatency = r.Summary.BerthdOverContainerd > 0 && r.Summary.BerthdOverContainerd <= goalLatency
	if len(r.Memory) == 2 {
		bm, cm := r.Memory[0], r.Memory[1]
		r.Summary.ShimRSS = ratio(bm.ShimMem.VmRSS, cm.ShimMem.VmRSS)
		r.Summary.ShimPSS = ratio(bm.ShimMem.Pss, cm.ShimMem.Pss)
		r.Summary.DaemonRSS = ratio(bm.DaemonMem.VmRSS, cm.DaemonMem.VmRSS)
		r.Summary.MetShimRSS = r.Summary.ShimRSS > 0 && r.Summary.ShimRSS <= goalShimRSS
	}
}

func (s *series) stats() {
	walls := make([]time.Duration, len(s.Runs))
	for i, x := range s.Runs {
		walls[i] = x.Wall
	}
	s.Median, s.P90 = percentile(walls, 50), percentile(walls, 90)
	if len(walls) > 0 {
		s.Min, s.Max = slices.Min(walls), slices.Max(walls)
	}
	s.ClientCPU = medianOf(s.Runs, func(x sample) time.Duration { return x.ClientCPU })
	s.DaemonCPU = medianOf(s.Runs, func(x sample) time.Duration { return x.DaemonCPU })
	s.Busy = float64(medianOf(s.Runs, func(x sample) time.Duration { return time.Duration(x.MachineBusy * 1e6) })) / 1e6
}

// percentile is the p-th percentile of ds by nearest rank, except that
// the 50th of an even count is the mean of the middle two; 0 for none.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	if p == 50 && n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	k := (p*n + 99) / 100 // ceil(p*n/100), the rank
	return s[max(k, 1)-1]
}

func medianOf(xs []sample, f func(sample) time.Duration) time.Duration {
	ds := make([]time.Duration, len(xs))
	for i, x := range xs {
		ds[i] = f(x)
	}
	return percentile(ds, 50)
}

func ratio(a, b int64) float64 {
	if a == 0 || b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// print writes the tables and the ratios.
func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "bench/run, %s: %d CPUs (%s), kernel %s, load %s → %s\n",
		r.Date, r.Machine.CPUs, r.Machine.Model, r.Machine.Kernel, r.LoadBefore, r.LoadAfter)
	fmt.Fprintf(w, "%s\n%s\n%s, %s\n", r.Versions["berthd"], r.Versions["containerd"], r.Versions["runc"], r.Versions["ctr"])
	fmt.Fprintf(w, "\nstart-to-exit of `ctr run --rm %s ID true`: %d runs each after %d warm-up rounds, rotated\n",
		imageName, r.Runs, r.Warmup)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, label("")+"\tmedian ms\tp90 ms\tmin ms\tmax ms\tclient CPU ms\tdaemon CPU ms\tmachine busy\t")
	for _, s := range r.Latency {
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%s\t%.0f%%\t\n", label(s.Name), msec(s.Median), msec(s.P90), msec(s.Min), msec(s.Max),
			msec(s.ClientCPU), orDash(s.Name != floorName, "%.0f", msec(s.DaemonCPU)), 100*s.Busy)
	}
	tw.Flush()
	sm := r.Summary
	fmt.Fprintf(w, "\nberthd / containerd   %.2f  (goal ≤ %.2f: %s)\n", sm.BerthdOverContainerd, goalLatency, met(sm.MetLatency))
	if sm.BerthdOverFloor > 0 {
		fmt.Fprintf(w, "berthd / floor        %.2f\ncontainerd / floor    %.2f\n", sm.BerthdOverFloor, sm.ContainerdOverFloor)
	}
	printTrace(w, r.Trace)
	if len(r.Memory) == 0 {
		return
	}
	fmt.Fprintf(w, "\nmemory with one `sleep` container running on each daemon (MiB)\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, label("")+"\tVmRSS\tPss\tRssAnon\tPrivate_Dirty\tthreads\tVmHWM\t")
	for _, m := range r.Memory {
		fmt.Fprintf(tw, "%s\t%s\n", label(m.Shim), memCols(m.ShimMem))
	}
	for _, m := range r.Memory {
		fmt.Fprintf(tw, "%s\t%s\n", label(m.Daemon+" (daemon)"), memCols(m.DaemonMem))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nshim VmRSS berthd / containerd    %.2f  (goal ≤ %.2f: %s)\n", sm.ShimRSS, goalShimRSS, met(sm.MetShimRSS))
	fmt.Fprintf(w, "shim Pss berthd / containerd      %.2f\n", sm.ShimPSS)
	fmt.Fprintf(w, "daemon VmRSS berthd / containerd  %.2f\n", sm.DaemonRSS)
}

func memCols(m proc.Mem) string {
	return fmt.Sprintf("%.1f\t%.1f\t%.1f\t%.1f\t%d\t%.1f\t", mib(m.VmRSS), mib(m.Pss), mib(m.RssAnon), mib(m.PrivateDirty), m.Threads, mib(m.VmHWM))
}

// label pads a table's first cell so that, in a right-aligned table, the
// first column reads left-aligned.
func label(s string) string { return fmt.Sprintf("%-24s", s) }

func orDash(ok bool, format string, v float64) string {
	if !ok {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
