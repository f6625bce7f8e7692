package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// memSample is one reading of a process's memory from /proc, in KiB
// except Threads.
type memSample struct {
	VmRSS   int64 `json:"vm_rss_kib"`   // resident pages, shared ones counted in full
	VmHWM   int64 `json:"vm_hwm_kib"`   // peak VmRSS since start
	RssAnon int64 `json:"rss_anon_kib"` // heap, stacks, Go arenas: the process's own memory
	RssFile int64 `json:"rss_file_kib"` // resident pages of the binary and other mapped files (bbolt's DB)
	Pss     int64 `json:"pss_kib"`      // shared pages divided among the processes mapping them
	// PrivateDirty is written memory no other process shares: the heap,
	// and file pages not yet written back. PrivateClean is mostly the
	// binary's pages when no other process maps the same file, so it
	// says more about the machine than about the daemon.
	PrivateDirty int64 `json:"private_dirty_kib"`
	PrivateClean int64 `json:"private_clean_kib"`
	Threads      int64 `json:"threads"`
}

// readMem reads /proc/PID/status and /proc/PID/smaps_rollup.
func readMem(pid int) (memSample, error) {
	var s memSample
	status, err := readKV(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	rollup, err := readKV(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return s, err
	}
	s = memSample{
		VmRSS: status["VmRSS"], VmHWM: status["VmHWM"], RssAnon: status["RssAnon"], RssFile: status["RssFile"],
		Threads: status["Threads"],
		Pss:     rollup["Pss"], PrivateDirty: rollup["Private_Dirty"], PrivateClean: rollup["Private_Clean"],
	}
	if s.VmRSS == 0 {
		return s, fmt.Errorf("/proc/%d/status: no VmRSS (process gone?)", pid)
	}
	return s, nil
}

func readKV(path string) (map[string]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	kv, err := parseKV(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return kv, nil
}

// parseKV reads "Key:   123 kB" lines as found in /proc/PID/status and
// smaps_rollup; lines whose value is not a number (Name) and the rollup's
// address header are skipped.
func parseKV(r io.Reader) (map[string]int64, error) {
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

// syncFile flushes a file's dirty page cache. A binary that was just
// built has dirty pages, which smaps counts as Private_Dirty in every
// process mapping them until writeback; flushing first keeps Private_Dirty
// comparable between a fresh bin/berthd and a packaged containerd.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
