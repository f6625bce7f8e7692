// Package proc reads what the benchmarks measure of a process from /proc:
// its memory (status and smaps_rollup), its CPU time, and which processes
// run a given executable (to find a daemon's shims).
package proc

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// Mem is one reading of a process's memory, in KiB except Threads.
type Mem struct {
	VmRSS   int64 `json:"vm_rss_kib"`   // resident pages, shared ones counted in full
	VmHWM   int64 `json:"vm_hwm_kib"`   // peak VmRSS since start
	RssAnon int64 `json:"rss_anon_kib"` // heap, stacks, Go arenas: the process's own memory
	RssFile int64 `json:"rss_file_kib"` // resident pages of the binary and other mapped files (bbolt's DB)
	Pss     int64 `json:"pss_kib"`      // shared pages divided among the processes mapping them
	// PrivateDirty is written memory no other process shares: the heap,
	// and file pages not yet written back. PrivateClean is mostly the
	// binary's pages when no other process maps the same file, so it
	// says more about the machine than about the process.
	PrivateDirty int64 `json:"private_dirty_kib"`
	PrivateClean int64 `json:"private_clean_kib"`
	Threads      int64 `json:"threads"`
}

// ReadMem reads /proc/PID/status and /proc/PID/smaps_rollup.
func ReadMem(pid int) (Mem, error) {
	status, err := ReadStatus(pid)
	if err != nil {
		return Mem{}, err
	}
	rollup, err := readKV(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return Mem{}, err
	}
	return Mem{
		VmRSS: status["VmRSS"], VmHWM: status["VmHWM"], RssAnon: status["RssAnon"], RssFile: status["RssFile"],
		Threads: status["Threads"],
		Pss:     rollup["Pss"], PrivateDirty: rollup["Private_Dirty"], PrivateClean: rollup["Private_Clean"],
	}, nil
}

// ReadStatus reads the numeric fields of /proc/PID/status (sizes in KiB).
// It fails for a process that is gone or a zombie (no VmRSS).
func ReadStatus(pid int) (map[string]int64, error) {
	kv, err := readKV(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	if _, ok := kv["VmRSS"]; !ok {
		return nil, fmt.Errorf("/proc/%d/status: no VmRSS (process exited?)", pid)
	}
	return kv, nil
}

func readKV(path string) (map[string]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	kv, err := ParseKV(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return kv, nil
}

// ParseKV reads "Key:   123 kB" lines as found in /proc/PID/status and
// smaps_rollup; lines whose value is not a number (Name) and the rollup's
// address header are skipped.
func ParseKV(r io.Reader) (map[string]int64, error) {
	kv := make(map[string]int64)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.ContainsAny(key, " \t") {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			continue
		}
		kv[key] = n
	}
	return kv, sc.Err()
}

// userHZ is the unit of /proc/PID/stat's times on Linux.
const userHZ = 100

// CPUTime is the process's utime+stime, from /proc/PID/stat.
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseCPUTime(string(b))
}

func parseCPUTime(stat string) (time.Duration, error) {
	// The command name is in parentheses and may hold spaces: count the
	// fields after it, where state is field 3, utime 14 and stime 15.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat %q: no command name", stat)
	}
	fs := strings.Fields(stat[i+1:])
	if len(fs) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the command name", len(fs))
	}
	ut, err1 := strconv.ParseInt(fs[11], 10, 64)
	st, err2 := strconv.ParseInt(fs[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("stat: utime %q, stime %q", fs[11], fs[12])
	}
	return time.Duration(ut+st) * time.Second / userHZ, nil
}

// FlushFile writes back a file's dirty page cache. A binary that was just
// built has dirty pages, which smaps counts as Private_Dirty in every
// process mapping them until writeback; flushing first keeps Private_Dirty
// comparable between a fresh build and a packaged binary.
func FlushFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
