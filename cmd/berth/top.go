package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/errdefs"
	"github.com/spf13/cobra"
)

// clockTicks is USER_HZ, the unit of times in /proc/PID/stat: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// procView is one process of top, read from /proc.
type procView struct {
	UID     string    `json:"uid"`
	PID     int       `json:"pid"`
	PPID    int       `json:"ppid"`
	State   string    `json:"state"`
	Started time.Time `json:"startedAt,omitzero"`
	CPUTime float64   `json:"cpuSeconds"`
	Command string    `json:"command"`
}

func newTopCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "top CONTAINER",
		Short: "List the processes of a running container, as ps -ef",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				rec, err := findContainer(ctx, a, c, args[0])
				if err != nil {
					return err
				}
				resp, err := tasksapi.NewTasksClient(c.cc).ListPids(ctx, &tasksapi.ListPidsRequest{ContainerID: rec.GetID()})
				if errdefs.IsNotFound(err) {
					return fmt.Errorf("container %s is not running: %w", describe(rec), errdefs.ErrFailedPrecondition)
				}
				if err != nil {
					return fmt.Errorf("processes of container %s: %w", describe(rec), err)
				}
				views := readProcs("/proc", resp.GetProcesses())
				return a.out().print(views, topTable(views).write)
			})
		},
	}
}

// readProcs reads each pid's /proc entries under procRoot; a process that
// exited meanwhile is left out.
func readProcs[P interface{ GetPid() uint32 }](procRoot string, pids []P) []procView {
	boot := bootTime(procRoot)
	views := []procView{}
	for _, p := range pids {
		v, err := readProc(procRoot, int(p.GetPid()), boot)
		if err == nil {
			views = append(views, v)
		}
	}
	return views
}

func readProc(procRoot string, pid int, boot time.Time) (procView, error) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return procView{}, err
	}
	v, err := parseStat(stat, boot)
	if err != nil {
		return procView{}, fmt.Errorf("%s/stat: %w", dir, err)
	}
	if status, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		v.UID = statusField(status, "Uid")
	}
	if cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil && len(cmdline) > 0 {
		v.Command = strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return v, nil
}

// parseStat reads /proc/PID/stat: "pid (comm) state ppid ..." where comm
// may hold spaces and parentheses, so fields count from the last ')'.
func parseStat(b []byte, boot time.Time) (procView, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procView{}, fmt.Errorf("no command in %q", b)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:open])))
	if err != nil {
		return procView{}, err
	}
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 20 { // starttime is the 20th field after comm
		return procView{}, fmt.Errorf("%d fields after the command, want 20 or more", len(f))
	}
	v := procView{PID: pid, State: f[0], Command: "[" + string(b[open+1:end]) + "]"}
	v.PPID, _ = strconv.Atoi(f[1])
	utime, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	v.CPUTime = float64(utime+stime) / clockTicks
	if start, err := strconv.ParseUint(f[19], 10, 64); err == nil && !boot.IsZero() {
		v.Started = boot.Add(time.Duration(start) * time.Second / clockTicks)
	}
	return v, nil
}

// bootTime is the btime line of /proc/stat, zero when it cannot be read.
func bootTime(procRoot string) time.Time {
	b, err := os.ReadFile(filepath.Join(procRoot, "stat"))
	if err != nil {
		return time.Time{}
	}
	if s := statusField(b, "btime"); s != "" {
		if secs, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(secs, 0)
		}
	}
	return time.Time{}
}

// statusField returns the first word after "key:" or "key " in a /proc
// file of such lines, "" when there is none.
func statusField(b []byte, key string) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), key)
		if !ok || rest == "" || (rest[0] != ':' && rest[0] != ' ') {
			continue
		}
		if f := strings.Fields(strings.TrimPrefix(rest, ":")); len(f) > 0 {
			return f[0]
		}
	}
	return ""
}

func topTable(views []procView) *table {
	t := newTable("UID", "PID", "PPID", "STIME", "TIME", "CMD")
	for _, v := range views {
		stime := "-"
		if !v.Started.IsZero() {
			stime = v.Started.Format("15:04")
		}
		t.add(dash(v.UID), strconv.Itoa(v.PID), strconv.Itoa(v.PPID), stime, cpuTime(v.CPUTime), v.Command)
	}
	return t
}

// cpuTime renders seconds as ps's [DD-]HH:MM:SS.
func cpuTime(secs float64) string {
	s := int64(secs)
	days, s := s/86400, s%86400
	clock := fmt.Sprintf("%02d:%02d:%02d", s/3600, s%3600/60, s%60)
	if days > 0 {
		return fmt.Sprintf("%d-%s", days, clock)
	}
	return clock
}
