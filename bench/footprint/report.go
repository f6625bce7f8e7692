package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/berth-dev/berth/bench/internal/proc"
)

// row is one metric of the table; a row without value is a section title.
type row struct {
	key    string // JSON key of the median
	label  string
	format string
	value  func(result) float64
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

// memRows are the memory metrics of one reading.
func memRows(prefix string, get func(result) proc.Mem) []row {
	m := func(key, label string, f func(proc.Mem) int64) row {
		return row{prefix + "_" + key + "_mib", "  " + label + " (MiB)", "%.1f",
			func(r result) float64 { return mib(f(get(r))) }}
	}
	return []row{
		m("vm_rss", "VmRSS", func(s proc.Mem) int64 { return s.VmRSS }),
		m("rss_anon", "RssAnon", func(s proc.Mem) int64 { return s.RssAnon }),
		m("rss_file", "RssFile", func(s proc.Mem) int64 { return s.RssFile }),
		m("pss", "Pss", func(s proc.Mem) int64 { return s.Pss }),
		m("private_dirty", "Private_Dirty", func(s proc.Mem) int64 { return s.PrivateDirty }),
		{prefix + "_threads", "  threads", "%.0f", func(r result) float64 { return float64(get(r).Threads) }},
	}
}

// rows are the table's rows for n operations.
func rows(n int) []row {
	rs := []row{
		{"plugins_loaded", "plugins loaded", "%.0f", func(r result) float64 { return float64(len(r.Loaded)) }},
		{"ready_ms", "start-up to socket ready (ms)", "%.1f", func(r result) float64 { return ms(r.Ready) }},
		{label: "idle after start-up"},
	}
	rs = append(rs, memRows("idle", func(r result) proc.Mem { return r.Idle })...)
	rs = append(rs,
		row{"ops_wall_ms", fmt.Sprintf("%d ops wall time (ms)", n), "%.0f", func(r result) float64 { return ms(r.OpsWall) }},
		row{"op_us", "  per op (µs)", "%.0f", func(r result) float64 { return perOp(r.OpsWall, n) }},
		row{label: fmt.Sprintf("idle after %d ops", n)},
	)
	rs = append(rs, memRows("after_ops", func(r result) proc.Mem { return r.AfterOps })...)
	return append(rs,
		row{"peak_mib", "peak VmRSS, VmHWM (MiB)", "%.1f", func(r result) float64 { return mib(r.AfterOps.VmHWM) }},
		row{"meta_db_kib", "meta.db size (KiB)", "%.0f", func(r result) float64 { return float64(r.MetaDB) / 1024 }},
	)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func perOp(d time.Duration, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(d) / float64(time.Microsecond) / float64(n)
}

// report is what the bench prints and writes as JSON.
type report struct {
	GoalMiB       int            `json:"goal_mib"`
	Ops           int            `json:"ops"`
	Runs          int            `json:"runs"`
	SettleSeconds float64        `json:"settle_seconds"`
	Daemons       []daemonReport `json:"daemons"`
	// GoalMet is whether berthd's median VmRSS is within GoalMiB idle after
	// start-up; GoalMetAfterOps the same after the operations.
	GoalMet         bool `json:"goal_met"`
	GoalMetAfterOps bool `json:"goal_met_after_ops"`
	rows            []row
}

type daemonReport struct {
	target
	Version string             `json:"version"`
	Runs    []result           `json:"runs"`
	Median  map[string]float64 `json:"median"`
}

func newReport(o options, ts []target, versions map[string]string, results [][]result) *report {
	r := &report{GoalMiB: goalMiB, Ops: o.ops, Runs: o.runs, SettleSeconds: o.settle.Seconds(), rows: rows(o.ops)}
	for i, t := range ts {
		d := daemonReport{target: t, Version: versions[t.Binary], Runs: results[i], Median: make(map[string]float64)}
		for _, rw := range r.rows {
			if rw.value != nil {
				d.Median[rw.key] = median(results[i], rw.value)
			}
		}
		r.Daemons = append(r.Daemons, d)
	}
	b := r.Daemons[0].Median
	r.GoalMet = b["idle_vm_rss_mib"] <= goalMiB
	r.GoalMetAfterOps = b["after_ops_vm_rss_mib"] <= goalMiB
	return r
}

func median(rs []result, f func(result) float64) float64 {
	vs := make([]float64, len(rs))
	for i, r := range rs {
		vs[i] = f(r)
	}
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2]
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
}

// print writes the header, the table as Markdown and the goal verdict.
func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "footprint: %d ops, %s settle, median of %d run(s)\n", r.Ops, time.Duration(r.SettleSeconds*float64(time.Second)), r.Runs)
	for _, d := range r.Daemons {
		fmt.Fprintf(w, "  %s: %s (%s)\n", d.Name, d.Binary, d.Version)
		if d.Comparable {
			fmt.Fprintf(w, "    disabled_plugins: %s\n", strings.Join(d.Disabled, " "))
		}
	}
	fmt.Fprintln(w)
	head := []string{"metric"}
	for _, d := range r.Daemons {
		head = append(head, d.Name)
	}
	for _, d := range r.Daemons[1:] {
		head = append(head, "berthd/"+d.Name)
	}
	table := [][]string{head, nil}
	for _, rw := range r.rows {
		table = append(table, r.cells(rw))
	}
	writeTable(w, table)
	fmt.Fprintln(w)
	b := r.Daemons[0].Median
	verdict := map[bool]string{true: "met", false: "NOT met"}
	fmt.Fprintf(w, "goal: berthd idle VmRSS <= %d MiB: after start-up %s (%.1f MiB); after %d ops %s (%.1f MiB)\n",
		r.GoalMiB, verdict[r.GoalMet], b["idle_vm_rss_mib"], r.Ops, verdict[r.GoalMetAfterOps], b["after_ops_vm_rss_mib"])
}

// cells are one row's label, values and ratios of berthd to the others.
func (r *report) cells(rw row) []string {
	cs := []string{rw.label}
	if rw.value == nil {
		return append(cs, slices.Repeat([]string{""}, 2*len(r.Daemons)-1)...)
	}
	for _, d := range r.Daemons {
		cs = append(cs, fmt.Sprintf(rw.format, d.Median[rw.key]))
	}
	b := r.Daemons[0].Median[rw.key]
	for _, d := range r.Daemons[1:] {
		if v := d.Median[rw.key]; v != 0 {
			cs = append(cs, fmt.Sprintf("%.2f", b/v))
		} else {
			cs = append(cs, "-")
		}
	}
	return cs
}

// writeTable writes a Markdown table, padded to line up in a terminal:
// labels left, numbers right; a nil row is the header's rule.
func writeTable(w io.Writer, table [][]string) {
	width := make([]int, len(table[0]))
	for _, cells := range table {
		for i, c := range cells {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for _, cells := range table {
		var b strings.Builder
		for i, wd := range width {
			switch {
			case cells == nil:
				fmt.Fprintf(&b, "|%s", strings.Repeat("-", wd+2))
			case i == 0:
				fmt.Fprintf(&b, "| %-*s ", wd, cells[i])
			default:
				fmt.Fprintf(&b, "| %*s ", wd, cells[i])
			}
		}
		fmt.Fprintf(w, "%s|\n", b.String())
	}
}
