package main

import (
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// The goals of the issue, on the big image.
const (
	goalVsContainerd = 0.36 // berthd time / containerd time
	goalVsFloor      = 1.2  // berthd time / floor
	goalRSSMiB       = 40   // berthd peak RSS
)

type report struct {
	Machine  machine      `json:"machine"`
	Runs     int          `json:"runs"`
	Modes    []string     `json:"modes"`
	Caches   string       `json:"caches"`
	Versions versions     `json:"versions"`
	Images   []*imageRows `json:"images"`
	Goals    *goals       `json:"goals,omitempty"`
}

type machine struct {
	CPUs   int    `json:"cpus"`
	Kernel string `json:"kernel"`
}

type versions struct {
	Berthd     string `json:"berthd"`
	Containerd string `json:"containerd"`
}

// imageRows is every measurement of one image and their medians.
type imageRows struct {
	Image  *image                  `json:"image"`
	Runs   map[string][]pullResult `json:"runs"`
	Floor  []time.Duration         `json:"floor_ns,omitempty"`
	Phases []phases                `json:"phases,omitempty"`
	Median map[string]pullResult   `json:"median"`
	// MedianFloor and MedianPhases are 0 when not measured.
	MedianFloor  time.Duration `json:"median_floor_ns,omitempty"`
	MedianPhases *phases       `json:"median_phases,omitempty"`
}

type goals struct {
	VsContainerd   float64 `json:"berthd_over_containerd"`
	VsFloor        float64 `json:"berthd_over_floor,omitempty"`
	BerthdPeakMiB  float64 `json:"berthd_peak_rss_mib"`
	MetContainerd  bool    `json:"met_vs_containerd"`
	MetFloor       bool    `json:"met_vs_floor"`
	MetRSS         bool    `json:"met_rss"`
	MeasuredFloor  bool    `json:"floor_measured"`
	MeasuredBoth   bool    `json:"containerd_and_berthd_measured"`
	BigImageMiB    int     `json:"big_image_mib"`
	ContainerdSecs float64 `json:"containerd_s"`
	BerthdSecs     float64 `json:"berthd_s"`
}

func newReport(o options, imgs []*image, modes []mode) *report {
	r := &report{Runs: o.runs, Machine: machine{CPUs: runtime.NumCPU(), Kernel: kernel()},
		Caches: "sync before each timed step, then registry blobs and client binaries read in"}
	if o.dropCaches {
		r.Caches = "sync + drop_caches=3 before each timed step, then registry blobs and client binaries read back in"
	}
	r.Versions = versions{Berthd: version(o.berthd), Containerd: version(o.containerd)}
	for _, m := range modes {
		r.Modes = append(r.Modes, m.Name)
	}
	for _, img := range imgs {
		r.Images = append(r.Images, &imageRows{Image: img, Runs: map[string][]pullResult{}})
	}
	return r
}

func version(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func kernel() string {
	out, _ := exec.Command("uname", "-r").Output()
	return strings.TrimSpace(string(out))
}

// summarize computes the medians and the goals.
func (r *report) summarize() {
	for _, row := range r.Images {
		row.Median = map[string]pullResult{}
		for m, runs := range row.Runs {
			row.Median[m] = pullResult{
				Wall:       median(runs, func(p pullResult) time.Duration { return p.Wall }),
				PeakRSS:    int64(median(runs, func(p pullResult) time.Duration { return time.Duration(p.PeakRSS) })),
				DaemonCPU:  median(runs, func(p pullResult) time.Duration { return p.DaemonCPU }),
				ClientCPU:  median(runs, func(p pullResult) time.Duration { return p.ClientCPU }),
				Downloaded: median(runs, func(p pullResult) time.Duration { return p.Downloaded }),
				Unpacked:   median(runs, func(p pullResult) time.Duration { return p.Unpacked }),
				MachineBusy: float64(median(runs, func(p pullResult) time.Duration {
					return time.Duration(p.MachineBusy * 1e6)
				})) / 1e6,
			}
		}
		if len(row.Floor) > 0 {
			row.MedianFloor = median(row.Floor, func(d time.Duration) time.Duration { return d })
		}
		if len(row.Phases) > 0 {
			row.MedianPhases = &phases{
				Fetch:   median(row.Phases, func(p phases) time.Duration { return p.Fetch }),
				Unpack1: median(row.Phases, func(p phases) time.Duration { return p.Unpack1 }),
				Unpack2: median(row.Phases, func(p phases) time.Duration { return p.Unpack2 }),
			}
		}
		if row.Image.Key == "big" {
			r.Goals = row.goals()
		}
	}
}

func (row *imageRows) goals() *goals {
	b, okB := row.Median["berthd"]
	c, okC := row.Median["containerd"]
	if !okB {
		return nil
	}
	g := &goals{BerthdPeakMiB: mib(b.PeakRSS), MetRSS: mib(b.PeakRSS) < goalRSSMiB, BerthdSecs: b.Wall.Seconds()}
	g.BigImageMiB = int(row.Image.Unpacked >> 20)
	if okC {
		g.MeasuredBoth = true
		g.ContainerdSecs = c.Wall.Seconds()
		g.VsContainerd = ratio(b.Wall, c.Wall)
		g.MetContainerd = g.VsContainerd <= goalVsContainerd
	}
	if row.MedianFloor > 0 {
		g.MeasuredFloor = true
		g.VsFloor = ratio(b.Wall, row.MedianFloor)
		g.MetFloor = g.VsFloor <= goalVsFloor
	}
	return g
}

// median of f over xs; the mean of the middle two for an even count.
func median[T any](xs []T, f func(T) time.Duration) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	v := make([]time.Duration, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func secs(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func x(f float64) string {
	if f == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", f)
}

// print writes the tables and the goals.
func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "cold pull + unpack, median of %d; %d CPUs, kernel %s\n", r.Runs, r.Machine.CPUs, r.Machine.Kernel)
	fmt.Fprintf(w, "page cache: %s\n", r.Caches)
	fmt.Fprintf(w, "berthd: %s; containerd: %s\n\n", r.Versions.Berthd, r.Versions.Containerd)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "image\tsize\tcontainerd\tberthd\tberthd (ctr)\tberthd/containerd\tfloor\tberthd/floor\tpeak RSS containerd\tberthd\tberthd (ctr)\t")
	for _, row := range r.Images {
		md := row.Median
		fmt.Fprintf(tw, "%s\t%d MiB/%d layers\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			row.Image.Key, row.Image.Unpacked>>20, len(row.Image.Layers),
			secs(md["containerd"].Wall), secs(md["berthd"].Wall), secs(md["berthd-ctr"].Wall),
			x(ratio(md["berthd"].Wall, md["containerd"].Wall)),
			secs(row.MedianFloor), x(ratio(md["berthd"].Wall, row.MedianFloor)),
			rss(md["containerd"].PeakRSS), rss(md["berthd"].PeakRSS), rss(md["berthd-ctr"].PeakRSS))
	}
	tw.Flush()
	r.printDetails(w)
	r.printGoals(w)
}

func rss(b int64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", mib(b))
}

// printDetails shows where the time went: CPU of daemon and client, and
// for berth pull the moment the last download and the last unpack ended.
func (r *report) printDetails(w io.Writer) {
	fmt.Fprintln(w, "\nCPU time (median) and berth pull's phases:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "image\tmode\twall\tdaemon CPU\tclient CPU\tlast download done\tlast layer unpacked\tmachine CPU busy\t")
	for _, row := range r.Images {
		for _, m := range r.Modes {
			md, ok := row.Median[m]
			if !ok {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f%%\t\n", row.Image.Key, m, secs(md.Wall),
				secs(md.DaemonCPU), secs(md.ClientCPU), secs(md.Downloaded), secs(md.Unpacked), 100*md.MachineBusy)
		}
		if p := row.MedianPhases; p != nil {
			fmt.Fprintf(tw, "%s\tstages alone\tfetch %s\tunpack x1 %s\tunpack x2 %s\t\t\t\t\n", row.Image.Key,
				secs(p.Fetch), secs(p.Unpack1), secs(p.Unpack2))
		}
	}
	tw.Flush()
}

func (r *report) printGoals(w io.Writer) {
	g := r.Goals
	if g == nil {
		fmt.Fprintln(w, "\ngoals: not judged (needs the big image pulled by berthd)")
		return
	}
	fmt.Fprintf(w, "\ngoals on the big image (%d MiB", g.BigImageMiB)
	if g.BigImageMiB < 1000 {
		fmt.Fprint(w, "; the goals are set for 1 GiB")
	}
	fmt.Fprintln(w, "):")
	if g.MeasuredBoth {
		fmt.Fprintf(w, "  berthd/containerd %.3f (%.2fs / %.2fs), goal <= %.2f: %s\n", g.VsContainerd, g.BerthdSecs, g.ContainerdSecs, goalVsContainerd, met(g.MetContainerd))
	}
	if g.MeasuredFloor {
		fmt.Fprintf(w, "  berthd/floor      %.3f, goal <= %.1f: %s\n", g.VsFloor, goalVsFloor, met(g.MetFloor))
	}
	fmt.Fprintf(w, "  berthd peak RSS   %.1f MiB, goal < %d MiB: %s\n", g.BerthdPeakMiB, goalRSSMiB, met(g.MetRSS))
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}
