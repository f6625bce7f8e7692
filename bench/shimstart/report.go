package main

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"
)

// report prints one row per shim, medians first, and berth's ratio to
// containerd's when both ran.
func report(w io.Writer, c config, results []*result) {
	fmt.Fprintf(w, "shim start→ready: median of %d starts (legacy bootstrap, start + dial + Connect)\n", c.starts)
	fmt.Fprintf(w, "idle memory: median of %d shims, each with one running container, read %s after Start\n\n", c.idles, c.settle)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "shim\tversion\tstart exits\tstart→ready\tmin–max\tVmRSS\tRssAnon\tPss")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s–%s\t%s\t%s\t%s\n", filepath.Base(r.name), r.version,
			ms(median(r.printed)), ms(median(r.starts)), ms(slices.Min(r.starts)), ms(slices.Max(r.starts)),
			mib(median(rss(r.idle))), mib(median(anon(r.idle))), mib(median(pss(r.idle))))
	}
	if len(results) == 2 {
		b, c := results[0], results[1]
		fmt.Fprintf(tw, "berth / containerd\t\t%.2f×\t%.2f×\t\t%.2f×\t%.2f×\t%.2f×\n",
			float64(median(b.printed))/float64(median(c.printed)), float64(median(b.starts))/float64(median(c.starts)),
			ratio(rss(b.idle), rss(c.idle)), ratio(anon(b.idle), anon(c.idle)), ratio(pss(b.idle), pss(c.idle)))
	}
	tw.Flush()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

func ratio(a, b []int64) float64 { return float64(median(a)) / float64(median(b)) }

func rss(ms []memory) []int64  { return field(ms, func(m memory) int64 { return m.RSS }) }
func anon(ms []memory) []int64 { return field(ms, func(m memory) int64 { return m.Anon }) }
func pss(ms []memory) []int64  { return field(ms, func(m memory) int64 { return m.PSS }) }

func field(ms []memory, f func(memory) int64) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = f(m)
	}
	return out
}
