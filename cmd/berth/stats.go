package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// statsInterval is the time between two samples of stats: the CPU use is
// the CPU time a container used between them.
const statsInterval = time.Second

// noLimit is the least memory limit taken for none: cgroup v1 reports
// "unlimited" as the largest page-aligned int64, v2 as the largest uint64.
const noLimit = 1 << 62

// statsView is one row of stats.
type statsView struct {
	ID         string  `json:"id"`
	Name       string  `json:"name,omitempty"`
	CPUPercent float64 `json:"cpuPercent"`
	MemUsage   uint64  `json:"memoryUsage"`
	MemLimit   uint64  `json:"memoryLimit"`
	MemPercent float64 `json:"memoryPercent"`
	Pids       uint64  `json:"pids"`
}

// sample is what one cgroup metric says; cpu is in nanoseconds.
type sample struct {
	cpu, mem, limit, pids uint64
	at                    time.Time
}

func newStatsCommand(a *app) *cobra.Command {
	var noStream bool
	cmd := &cobra.Command{
		Use:   "stats [--no-stream] [CONTAINER...]",
		Short: "Show the CPU, memory and process counts of running containers",
		Long: `Show the CPU use (percent of one CPU), memory use and limit, and process count
of the named containers, or of every running one, from their cgroup metrics,
refreshed every second until interrupted; --no-stream prints once.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				names, err := statsTargets(ctx, a, c, args)
				if err != nil {
					return err
				}
				return streamStats(ctx, a, c, names, noStream)
			})
		},
	}
	cmd.Flags().BoolVar(&noStream, "no-stream", false, "print one sample and exit")
	return cmd
}

// statsTargets maps the IDs of the containers to show to their names: the
// named ones, or every running one.
func statsTargets(ctx context.Context, a *app, c *conn, refs []string) (map[string]string, error) {
	names := map[string]string{}
	if len(refs) == 0 {
		recs, err := listContainers(ctx, c)
		if err != nil {
			return nil, err
		}
		tasks, err := listTasks(ctx, c)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			if t := tasks[rec.GetID()]; t != nil && t.GetStatus() == task.Status_RUNNING {
				names[rec.GetID()] = containerName(rec)
			}
		}
		return names, nil
	}
	for _, ref := range refs {
		rec, err := findContainer(ctx, a, c, ref)
		if err != nil {
			return nil, err
		}
		names[rec.GetID()] = containerName(rec)
	}
	return names, nil
}

func streamStats(ctx context.Context, a *app, c *conn, names map[string]string, once bool) error {
	prev, err := sampleAll(ctx, c, names)
	if err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil // interrupted: the normal end of stats
		case <-time.After(statsInterval):
		}
		cur, err := sampleAll(ctx, c, names)
		if err != nil {
			return err
		}
		views := statsViews(names, prev, cur)
		if !once && a.opts.format == formatTable && writesToTerminal(a.stdout) {
			fmt.Fprint(a.stdout, "\033[2J\033[H") // redraw in place
		}
		if err := a.out().print(views, statsTable(views).write); err != nil || once {
			return err
		}
		prev = cur
	}
}

// sampleAll reads the metrics of the containers by ID.
func sampleAll(ctx context.Context, c *conn, names map[string]string) (map[string]sample, error) {
	out := map[string]sample{}
	if len(names) == 0 {
		return out, nil
	}
	filters := make([]string, 0, len(names))
	for id := range names {
		filters = append(filters, "id=="+id)
	}
	resp, err := tasksapi.NewTasksClient(c.cc).Metrics(ctx, &tasksapi.MetricsRequest{Filters: filters})
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	for _, m := range resp.GetMetrics() {
		s, err := decodeMetric(m)
		if err != nil {
			return nil, fmt.Errorf("metrics of container %q: %w", m.GetID(), err)
		}
		out[m.GetID()] = s
	}
	return out, nil
}

// decodeMetric reads the cgroup v1 or v2 metrics a shim reports.
func decodeMetric(m *types.Metric) (sample, error) {
	v, err := typeurl.UnmarshalAny(m.GetData())
	if err != nil {
		return sample{}, err
	}
	s := sample{at: asTime(m.GetTimestamp())}
	switch mt := v.(type) {
	case *v1.Metrics:
		s.cpu = mt.GetCPU().GetUsage().GetTotal()
		s.mem, s.limit = mt.GetMemory().GetUsage().GetUsage(), mt.GetMemory().GetUsage().GetLimit()
		s.pids = mt.GetPids().GetCurrent()
	case *v2.Metrics:
		s.cpu = mt.GetCPU().GetUsageUsec() * 1000
		s.mem, s.limit = mt.GetMemory().GetUsage(), mt.GetMemory().GetUsageLimit()
		s.pids = mt.GetPids().GetCurrent()
	default:
		return sample{}, fmt.Errorf("metrics of type %q: %w", m.GetData().GetTypeUrl(), errdefs.ErrNotImplemented)
	}
	if s.limit == 0 || s.limit >= noLimit {
		s.limit = hostMemory()
	}
	return s, nil
}

// statsViews computes each container's row from two samples; one missing
// from either (it stopped meanwhile) is left out.
func statsViews(names map[string]string, prev, cur map[string]sample) []statsView {
	views := []statsView{}
	for id, s := range cur {
		p, ok := prev[id]
		if !ok {
			continue
		}
		v := statsView{ID: id, Name: names[id], MemUsage: s.mem, MemLimit: s.limit, Pids: s.pids}
		if wall := s.at.Sub(p.at); wall > 0 && s.cpu >= p.cpu {
			v.CPUPercent = float64(s.cpu-p.cpu) / float64(wall.Nanoseconds()) * 100
		}
		if s.limit > 0 {
			v.MemPercent = float64(s.mem) / float64(s.limit) * 100
		}
		views = append(views, v)
	}
	slices.SortFunc(views, func(x, y statsView) int { return strings.Compare(x.ID, y.ID) })
	return views
}

func statsTable(views []statsView) *table {
	t := newTable("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS")
	for _, v := range views {
		t.add(shortID(v.ID), dash(v.Name), fmt.Sprintf("%.2f%%", v.CPUPercent),
			binarySize(v.MemUsage)+" / "+binarySize(v.MemLimit), fmt.Sprintf("%.2f%%", v.MemPercent),
			strconv.FormatUint(v.Pids, 10))
	}
	return t
}

// binarySize renders bytes in binary units, as docker stats does.
func binarySize(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	size := float64(n)
	i := 0
	for size >= 1024 && i < len(units)-1 {
		size /= 1024
		i++
	}
	return fmt.Sprintf("%.4g%s", size, units[i])
}

// hostMemory is the host's RAM, the limit of a container without one.
func hostMemory() uint64 {
	var info unix.Sysinfo_t
	if err := unix.Sysinfo(&info); err != nil {
		return 0
	}
	return uint64(info.Totalram) * uint64(info.Unit)
}

// writesToTerminal reports whether w is a terminal.
func writesToTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTerminal(f)
}
