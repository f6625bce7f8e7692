package proc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseKV(t *testing.T) {
	in := "Name:\tberthd\nVmHWM:\t   15000 kB\nVmRSS:\t   14180 kB\nThreads:\t7\n" +
		"00400000-7ffd00b32000 ---p 00000000 00:00 0      [rollup]\nPss:   12976 kB\nPrivate_Dirty:  2048 kB\n"
	got, err := ParseKV(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"VmHWM": 15000, "VmRSS": 14180, "Threads": 7, "Pss": 12976, "Private_Dirty": 2048}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
}

func TestParseCPUTime(t *testing.T) {
	stat := "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 1 0 0"
	got, err := parseCPUTime(stat)
	if err != nil || got != 3*time.Second {
		t.Errorf("got %v, %v; want 3s", got, err)
	}
	if _, err := parseCPUTime("42 (x) S 1"); err == nil {
		t.Error("short stat parsed")
	}
}

func TestReadSelf(t *testing.T) {
	m, err := ReadMem(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.VmRSS == 0 || m.Pss == 0 || m.Threads == 0 {
		t.Errorf("own memory: %+v", m)
	}
	if _, err := CPUTime(os.Getpid()); err != nil {
		t.Error(err)
	}
}

// TestFind reads a fake /proc: pids whose exe has the name, including a
// deleted binary, sorted; other names and non-pid entries are skipped.
func TestFind(t *testing.T) {
	root := t.TempDir()
	mk := func(pid, exe, cmdline string) {
		dir := filepath.Join(root, pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(exe, filepath.Join(dir, "exe")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cmdline"), []byte(cmdline), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("200", "/bin/shim (deleted)", "shim\x00-address\x00/b/d.sock\x00")
	mk("30", "/usr/bin/shim", "shim\x00-address\x00/a/d.sock\x00")
	mk("31", "/usr/bin/other", "other\x00")
	mk("self", "/usr/bin/shim", "shim\x00")
	got, err := Find(root, "shim")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].PID != 30 || got[1].PID != 200 || got[1].Exe != "/bin/shim" ||
		!got[0].HasArg("/a/d.sock") || got[0].HasArg("/b/d.sock") {
		t.Errorf("got %+v", got)
	}
}
