package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// traceSeries is the -trace runs of one daemon: `ctr run --rm` through an
// rpcProxy, so that each run's time splits by RPC.
type traceSeries struct {
	Name string     `json:"name"`
	Runs []traceRun `json:"runs"`
	// Methods are the median over runs of each method's calls per run
	// and their summed time, in the order of the median run's calls.
	Methods []methodStat `json:"methods"`
	// BeforeFirst is from ctr's start to its first call (process start,
	// connecting), AfterLast from the last call's end to ctr's exit.
	BeforeFirst time.Duration `json:"median_before_first_rpc_ns"`
	AfterLast   time.Duration `json:"median_after_last_rpc_ns"`
	Wall        time.Duration `json:"median_wall_ns"`
}

type traceRun struct {
	Wall  time.Duration `json:"wall_ns"`
	Calls []rpcCall     `json:"calls"`
}

type methodStat struct {
	Method string        `json:"method"`
	Calls  int           `json:"calls_per_run"`
	Time   time.Duration `json:"median_time_ns"`
}

// measureTrace runs o.trace traced runs on each daemon, alternating.
func (e *env) measureTrace(ctx context.Context) ([]*traceSeries, error) {
	var out []*traceSeries
	proxies := make([]*rpcProxy, len(e.targets))
	defer func() {
		for _, p := range proxies {
			if p != nil {
				p.close()
			}
		}
	}()
	for i, t := range e.targets {
		p, err := startProxy(filepath.Join(t.cfg.Dir, "proxy.sock"), t.d.Socket)
		if err != nil {
			return nil, fmt.Errorf("%s: rpc proxy: %w", t.Name, err)
		}
		proxies[i] = p
		out = append(out, &traceSeries{Name: t.Name})
	}
	for r := range e.o.trace {
		for k := range e.targets {
			i := (k + r) % len(e.targets)
			run, err := e.traceRun(ctx, e.targets[i], proxies[i], fmt.Sprintf("%s-trace-%d", e.targets[i].Name, r))
			if err != nil {
				return nil, fmt.Errorf("%s, traced run %d: %w", e.targets[i].Name, r+1, err)
			}
			out[i].Runs = append(out[i].Runs, run)
		}
	}
	for _, s := range out {
		s.summarize()
		fmt.Fprintf(os.Stderr, "bench/run: traced %s: median %.0f ms\n", s.Name, msec(s.Wall))
	}
	return out, nil
}

func (e *env) traceRun(ctx context.Context, t *target, p *rpcProxy, id string) (traceRun, error) {
	args := append([]string{"-a", p.socket, "-n", namespace}, t.runArgs("--rm", imageName, id, "true")...)
	p.reset(time.Now())
	s, err := timeCommand(ctx, e.o.ctr, args...)
	if err != nil {
		return traceRun{}, err
	}
	calls := p.take()
	slices.SortFunc(calls, func(a, b rpcCall) int { return int(a.Start - b.Start) })
	return traceRun{Wall: s.Wall, Calls: calls}, nil
}

// summarize computes the medians; the method order is that of the run
// whose wall time is the median.
func (s *traceSeries) summarize() {
	if len(s.Runs) == 0 {
		return
	}
	runs := slices.Clone(s.Runs)
	slices.SortFunc(runs, func(a, b traceRun) int { return int(a.Wall - b.Wall) })
	mid := runs[len(runs)/2]
	var order []string
	for _, c := range mid.Calls {
		if !slices.Contains(order, c.Method) {
			order = append(order, c.Method)
		}
	}
	var walls, before, after []time.Duration
	for _, r := range s.Runs {
		walls = append(walls, r.Wall)
		if len(r.Calls) > 0 {
			before = append(before, r.Calls[0].Start)
			last := slices.MaxFunc(r.Calls, func(a, b rpcCall) int { return int(a.End - b.End) })
			after = append(after, r.Wall-last.End)
		}
	}
	s.Wall, s.BeforeFirst, s.AfterLast = percentile(walls, 50), percentile(before, 50), percentile(after, 50)
	s.Methods = nil
	for _, m := range order {
		var n, d []time.Duration
		for _, r := range s.Runs {
			var count, sum time.Duration
			for _, c := range r.Calls {
				if c.Method == m {
					count++
					sum += c.End - c.Start
				}
			}
			n, d = append(n, count), append(d, sum)
		}
		s.Methods = append(s.Methods, methodStat{Method: m, Calls: int(percentile(n, 50)), Time: percentile(d, 50)})
	}
}

// printTrace writes the per-RPC table of all series side by side, then
// each series' median run as a timeline.
func printTrace(w io.Writer, ss []*traceSeries) {
	if len(ss) == 0 {
		return
	}
	fmt.Fprintf(w, "\n`ctr run --rm` split by RPC as ctr sees it, through a recording proxy: median of %d runs each (ms)\n", len(ss[0].Runs))
	fmt.Fprintln(w, "(Wait lasts from before Start until the exit, so the calls overlap)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	hdr := label("") + "\t"
	for _, s := range ss {
		hdr += s.Name + " calls\t" + s.Name + " ms\t"
	}
	fmt.Fprintln(tw, hdr)
	row := func(name string, f func(*traceSeries) string) {
		line := label(name) + "\t"
		for _, s := range ss {
			line += f(s)
		}
		fmt.Fprintln(tw, line)
	}
	row("ctr start → first RPC", func(s *traceSeries) string { return fmt.Sprintf("\t%.1f\t", msec(s.BeforeFirst)) })
	var methods []string
	for _, s := range ss {
		for _, m := range s.Methods {
			if !slices.Contains(methods, m.Method) {
				methods = append(methods, m.Method)
			}
		}
	}
	for _, m := range methods {
		row(shortMethod(m), func(s *traceSeries) string {
			i := slices.IndexFunc(s.Methods, func(x methodStat) bool { return x.Method == m })
			if i < 0 {
				return "-\t-\t"
			}
			return fmt.Sprintf("%d\t%.1f\t", s.Methods[i].Calls, msec(s.Methods[i].Time))
		})
	}
	row("last RPC → ctr exit", func(s *traceSeries) string { return fmt.Sprintf("\t%.1f\t", msec(s.AfterLast)) })
	row("wall", func(s *traceSeries) string { return fmt.Sprintf("\t%.1f\t", msec(s.Wall)) })
	tw.Flush()
	for _, s := range ss {
		printTimeline(w, s)
	}
}

// printTimeline writes the calls of s's median run: start, duration,
// method.
func printTimeline(w io.Writer, s *traceSeries) {
	runs := slices.Clone(s.Runs)
	slices.SortFunc(runs, func(a, b traceRun) int { return int(a.Wall - b.Wall) })
	mid := runs[len(runs)/2]
	fmt.Fprintf(w, "\n%s, median traced run (%.1f ms): start ms, duration ms, call\n", s.Name, msec(mid.Wall))
	for _, c := range mid.Calls {
		status := ""
		if c.Err != "" {
			status = "  (" + c.Err + ")"
		}
		fmt.Fprintf(w, "  %7.1f %7.1f  %s%s\n", msec(c.Start), msec(c.End-c.Start), shortMethod(c.Method), status)
	}
}

// shortMethod turns /containerd.services.tasks.v1.Tasks/Create into
// Tasks/Create.
func shortMethod(m string) string {
	svc, name, ok := strings.Cut(strings.TrimPrefix(m, "/"), "/")
	if !ok {
		return m
	}
	return svc[strings.LastIndexByte(svc, '.')+1:] + "/" + name
}
