package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	formatTable = "table"
	formatJSON  = "json"
)

// printer writes a command's result in the --format the user chose: a table
// for people, JSON for programs.
type printer struct {
	format string
	w      io.Writer
}

// print writes v as JSON, or calls human to render it for people.
func (p printer) print(v any, human func(io.Writer) error) error {
	if p.format == formatJSON {
		return writeJSON(p.w, v)
	}
	return human(p.w)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table is rows of cells under a header, aligned with text/tabwriter.
type table struct {
	header []string
	rows   [][]string
}

func newTable(header ...string) *table { return &table{header: header} }

// cellReplacer keeps a cell on its line and in its column.
var cellReplacer = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ")

func (t *table) add(cells ...string) {
	row := make([]string, len(cells))
	for i, c := range cells {
		row[i] = cellReplacer.Replace(c)
	}
	t.rows = append(t.rows, row)
}

func (t *table) write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join(t.header, "\t"))
	for _, row := range t.rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// section is a titled list of "Key: value" lines, for single objects such as
// the server's version.
type section struct {
	title  string
	fields [][2]string
}

func (s *section) add(key, value string) {
	s.fields = append(s.fields, [2]string{key, cellReplacer.Replace(value)})
}

func writeSections(w io.Writer, sections ...*section) error {
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
	for _, s := range sections {
		fmt.Fprintf(tw, "%s:\n", s.title)
		for _, f := range s.fields {
			fmt.Fprintf(tw, "  %s:\t%s\n", f[0], f[1])
		}
	}
	return tw.Flush()
}

// dash stands in for an empty cell, so columns stay countable.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// formatLabels renders labels as sorted k=v pairs joined by commas.
func formatLabels(labels map[string]string) string {
	if len(labels) == 0 {
		return "-"
	}
	pairs := make([]string, 0, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		pairs = append(pairs, k+"="+labels[k])
	}
	return strings.Join(pairs, ",")
}

// humanSize renders a byte count with decimal units, like ctr and docker.
func humanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB", "EB"}
	size := float64(n)
	i := 0
	for size >= 1000 && i < len(units)-1 {
		size /= 1000
		i++
	}
	return fmt.Sprintf("%.4g%s", size, units[i])
}

// humanAge renders how long before now t was, in its largest whole unit.
func humanAge(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", max(0, int(d/time.Second)))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	default:
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
}

// asTime converts a proto timestamp; nil becomes the zero time, which JSON
// output omits.
func asTime(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

// orEmpty keeps JSON lists as [] rather than null when there is nothing.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// printNames writes one name per line, for -q.
func printNames[T any](w io.Writer, items []T, name func(T) string) error {
	for _, item := range items {
		if _, err := io.WriteString(w, name(item)+"\n"); err != nil {
			return err
		}
	}
	return nil
}
