// Package procmem keeps a long-lived Go daemon's resident set to the code
// it runs. The kernel maps an executable's pages 64 KiB at a time around
// each page fault ("fault-around"), so a Go binary's resident size follows
// its size on disk rather than the code it runs: start-up touches init code
// all over the binary, and the neighbours of every touched page come in
// with it. TrimText, called once start-up is over, drops the resident pages
// of the executable's read-only mappings (clean file pages: they come back
// from the page cache on the next touch, one page at a time) and turns off
// fault-around for those mappings with MADV_RANDOM.
//
// What this saves is resident set, not page cache: the pages stay cached
// and shared between the processes of the same binary (every shim), so the
// private cost of one more process is its anonymous memory, which TrimText
// does not change. bench/footprint and bench/shimstart report both.
package procmem

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// TrimText applies MADV_RANDOM and MADV_DONTNEED to every non-writable
// mapping of the running executable. It returns the bytes of mappings
// advised.
func TrimText() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("trim text: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("trim text: %w", err)
	}
	defer f.Close()
	var total int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		start, end, ok := textMapping(sc.Text(), exe)
		if !ok {
			continue
		}
		for _, advice := range []uintptr{unix.MADV_RANDOM, unix.MADV_DONTNEED} {
			if _, _, errno := unix.Syscall(unix.SYS_MADVISE, start, end-start, advice); errno != 0 {
				return total, fmt.Errorf("trim text: madvise %x-%x: %w", start, end, errno)
			}
		}
		total += int64(end - start)
	}
	return total, sc.Err()
}

// textMapping parses one /proc/self/maps line and reports whether it is a
// read-only (not writable) mapping of exe.
func textMapping(line, exe string) (start, end uintptr, ok bool) {
	fs := strings.Fields(line)
	if len(fs) < 6 || strings.Join(fs[5:], " ") != exe || strings.Contains(fs[1], "w") {
		return 0, 0, false
	}
	lo, hi, found := strings.Cut(fs[0], "-")
	a, err1 := strconv.ParseUint(lo, 16, 64)
	b, err2 := strconv.ParseUint(hi, 16, 64)
	if !found || err1 != nil || err2 != nil || b <= a {
		return 0, 0, false
	}
	return uintptr(a), uintptr(b), true
}
