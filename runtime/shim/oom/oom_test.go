package oom

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

const hybridMountinfo = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:9 - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

func TestLocate(t *testing.T) {
	v2root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(v2root, "kubepods", "pod1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v2root, "kubepods", "pod1", "memory.events"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	v2mountinfo := "25 1 0:22 / " + v2root + " rw - cgroup2 cgroup2 rw,nsdelegate\n"
	for _, tc := range []struct {
		name, cgroup, mountinfo string
		want                    Cgroup
	}{
		{"hybrid: v1 memory wins", "9:name=systemd:/\n4:memory:/berth/c1\n1:cpu:/\n0::/\n", hybridMountinfo,
			Cgroup{Dir: "/sys/fs/cgroup/memory/berth/c1"}},
		{"v1 controllers mounted together", "3:cpu,memory:/a\n", "35 31 0:32 / /sys/fs/cgroup/cpu,memory rw - cgroup cgroup rw,cpu,memory\n",
			Cgroup{Dir: "/sys/fs/cgroup/cpu,memory/a"}},
		{"v1 mount of a sub-tree", "4:memory:/outer/inner/c\n", "35 31 0:32 /outer /mnt/mem\\040x rw - cgroup cgroup rw,memory\n",
			Cgroup{Dir: "/mnt/mem x/inner/c"}},
		{"v2", "0::/kubepods/pod1\n", v2mountinfo, Cgroup{Dir: filepath.Join(v2root, "kubepods", "pod1"), V2: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Locate([]byte(tc.cgroup), []byte(tc.mountinfo))
			if err != nil || got != tc.want {
				t.Errorf("Locate = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	for name, tc := range map[string][2]string{
		"no memory cgroup":       {"1:cpu:/\n", hybridMountinfo},
		"memory not mounted":     {"4:memory:/a\n", "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"},
		"outside the mount root": {"4:memory:/a\n", "35 31 0:32 /b /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"},
		"v2 without memory":      {"0::/\n", v2mountinfo},
	} {
		if got, err := Locate([]byte(tc[0]), []byte(tc[1])); err == nil {
			t.Errorf("%s: Locate = %+v, want an error", name, got)
		}
	}
}

func FuzzLocate(f *testing.F) {
	f.Add([]byte("4:memory:/a\n0::/\n"), []byte(hybridMountinfo))
	f.Fuzz(func(t *testing.T, cgroup, mountinfo []byte) {
		_, _ = Locate(cgroup, mountinfo)
	})
}

// On cgroup v2 the Watcher wakes on changes of memory.events and reports
// each increase of oom_kill once, whether it notices through inotify or
// Check.
func TestWatchV2Counter(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "memory.events")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(events, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("low 0\nhigh 0\nmax 0\noom 1\noom_kill 1\n") // before the watch: not news
	var n atomic.Int32
	w, err := WatchCgroup(Cgroup{Dir: dir, V2: true}, func() { n.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	waitFor := func(want int32) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); n.Load() != want && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if got := n.Load(); got != want {
			t.Fatalf("%d OOM reports, want %d", got, want)
		}
	}
	write("low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\n") // no kill
	time.Sleep(100 * time.Millisecond)
	waitFor(0)
	write("low 0\nhigh 0\nmax 3\noom 3\noom_kill 2\n")
	waitFor(1)
	w.Check()
	waitFor(1)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	write("oom_kill 9\n")
	w.Check()
	time.Sleep(100 * time.Millisecond)
	waitFor(1)
}

func TestReadCounter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "memory.oom_control")
	if err := os.WriteFile(path, []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, counted, err := readCounter(path); n != 7 || !counted || err != nil {
		t.Errorf("readCounter = %d, %v, %v", n, counted, err)
	}
	if err := os.WriteFile(path, []byte("oom_kill_disable 0\nunder_oom 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, counted, err := readCounter(path); counted || err != nil {
		t.Errorf("readCounter of a kernel without the counter = %v, %v", counted, err)
	}
}
