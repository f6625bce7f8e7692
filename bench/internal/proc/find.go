package proc

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Process is a running process as /proc shows it.
type Process struct {
	PID int
	// Exe is the executable's path; " (deleted)" is cut off a binary
	// replaced since the process started.
	Exe     string
	Cmdline []string
}

// HasArg reports whether arg is one of the process's arguments.
func (p Process) HasArg(arg string) bool { return slices.Contains(p.Cmdline, arg) }

// Find returns the processes under root (normally "/proc") whose
// executable's file name is name, by increasing pid. Processes that exit
// while being read, and kernel threads, are skipped.
func Find(root, name string) ([]Process, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var found []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		exe, err := os.Readlink(filepath.Join(dir, "exe"))
		if err != nil {
			continue
		}
		exe = strings.TrimSuffix(exe, " (deleted)")
		if filepath.Base(exe) != name {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil {
			continue
		}
		found = append(found, Process{PID: pid, Exe: exe, Cmdline: strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")})
	}
	slices.SortFunc(found, func(a, b Process) int { return a.PID - b.PID })
	return found, nil
}
