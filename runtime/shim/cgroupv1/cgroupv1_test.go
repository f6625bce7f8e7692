package cgroupv1

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
)

const hybridMountinfo = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 /outer /mnt/pids\040x rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:9 - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

func TestLocate(t *testing.T) {
	got := Locate([]byte("9:name=systemd:/sys.slice\n4:memory:/berth/c1\n3:pids:/outer/c1\n2:cpu,cpuacct:/berth/c1\n1:blkio:/x\n0::/v2\n"), []byte(hybridMountinfo))
	want := Cgroup{
		"name=systemd": "/sys/fs/cgroup/systemd/sys.slice",
		"memory":       "/sys/fs/cgroup/memory/berth/c1",
		"pids":         "/mnt/pids x/c1",
		"cpu":          "/sys/fs/cgroup/cpu,cpuacct/berth/c1",
		"cpuacct":      "/sys/fs/cgroup/cpu,cpuacct/berth/c1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Locate (-want +got):\n%s", diff)
	}
	// A cgroup outside the mount's root is not reachable through it.
	if got := Locate([]byte("3:pids:/elsewhere\n"), []byte(hybridMountinfo)); len(got) != 0 {
		t.Errorf("Locate outside the mount root = %v, want nothing", got)
	}
}

func FuzzLocate(f *testing.F) {
	f.Add([]byte("4:memory:/a\n2:cpu,cpuacct:/b\n0::/\n"), []byte(hybridMountinfo))
	f.Fuzz(func(t *testing.T, procCgroup, mountinfo []byte) {
		_ = Locate(procCgroup, mountinfo)
	})
}

func TestStatic(t *testing.T) {
	got := static([]byte(hybridMountinfo), "/shim")
	want := Cgroup{
		"name=systemd": "/sys/fs/cgroup/systemd/shim",
		"memory":       "/sys/fs/cgroup/memory/shim",
		"pids":         "/mnt/pids x/shim",
		"cpu":          "/sys/fs/cgroup/cpu,cpuacct/shim",
		"cpuacct":      "/sys/fs/cgroup/cpu,cpuacct/shim",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("static (-want +got):\n%s", diff)
	}
}

// AddProc writes the pid once into each hierarchy, however many
// controllers share it.
func TestAddProc(t *testing.T) {
	root := t.TempDir()
	c := Cgroup{}
	for _, ctrl := range []string{"memory", "cpu,cpuacct"} {
		dir := filepath.Join(root, ctrl, "shim")
		writeFiles(t, dir, map[string]string{"cgroup.procs": ""})
		for _, name := range strings.Split(ctrl, ",") {
			c[name] = dir
		}
	}
	if err := c.AddProc(42); err != nil {
		t.Fatal(err)
	}
	for _, ctrl := range []string{"memory", "cpu,cpuacct"} {
		if data, err := os.ReadFile(filepath.Join(root, ctrl, "shim", "cgroup.procs")); err != nil || string(data) != "42" {
			t.Errorf("%s cgroup.procs = %q, %v; want 42", ctrl, data, err)
		}
	}
	if err := (Cgroup{"memory": filepath.Join(root, "gone")}).AddProc(42); err == nil {
		t.Error("AddProc to a missing cgroup succeeded")
	}
}

// hostSizes are the huge page sizes of the host, which both the library
// and Stat read from the real /sys/kernel/mm/hugepages.
func hostSizes(t *testing.T) []string {
	t.Helper()
	sizes, err := hugePageSizes()
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return sizes
}

// cgroupFiles is a cgroup with every file the metrics come from.
func cgroupFiles(sizes []string) map[string]map[string]string {
	hugetlb := map[string]string{}
	for i, size := range sizes {
		n := strconv.Itoa(i + 1)
		hugetlb["hugetlb."+size+".usage_in_bytes"] = n + "000"
		hugetlb["hugetlb."+size+".max_usage_in_bytes"] = n + "500"
		hugetlb["hugetlb."+size+".failcnt"] = n
	}
	memory := map[string]string{
		"memory.stat": "cache 4096\nrss 8192\nrss_huge 0\nshmem 0\nmapped_file 12\ndirty 1\nwriteback 2\npgpgin 100\npgpgout 90\n" +
			"pgfault 300\npgmajfault 3\ninactive_anon 5\nactive_anon 6\ninactive_file 7\nactive_file 8\nunevictable 9\n" +
			"hierarchical_memory_limit 9223372036854771712\nhierarchical_memsw_limit 9223372036854771712\ntotal_cache 4096\n" +
			"total_rss 8192\ntotal_rss_huge 0\ntotal_mapped_file 12\ntotal_dirty 1\ntotal_writeback 2\ntotal_pgpgin 100\n" +
			"total_pgpgout 90\ntotal_pgfault 300\ntotal_pgmajfault 3\ntotal_inactive_anon 5\ntotal_active_anon 6\n" +
			"total_inactive_file 7\ntotal_active_file 8\ntotal_unevictable 9\n",
		"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
	}
	for i, module := range []string{"memory.", "memory.memsw.", "memory.kmem.", "memory.kmem.tcp."} {
		memory[module+"usage_in_bytes"] = strconv.Itoa(1000 + i)
		memory[module+"max_usage_in_bytes"] = strconv.Itoa(2000 + i)
		memory[module+"failcnt"] = strconv.Itoa(i)
		memory[module+"limit_in_bytes"] = "9223372036854771712"
	}
	memory["memory.kmem.tcp.limit_in_bytes"] = "-1"
	return map[string]map[string]string{
		"pids":    {"pids.current": "3\n", "pids.max": "max\n"},
		"cpu":     {"cpu.stat": "nr_periods 10\nnr_throttled 2\nthrottled_time 12345\nnr_bursts 0\nburst_time 0\n"},
		"cpuacct": {"cpuacct.stat": "user 150\nsystem 25\n", "cpuacct.usage": "1234567890\n", "cpuacct.usage_percpu": "1000 2000 0 \n"},
		"memory":  memory,
		"blkio": {
			"blkio.io_serviced_recursive":      "8:0 Read 10\n8:0 Write 20\n8:0 Sync 5\n8:0 Async 25\n8:0 Total 30\n7:1 Read 1\nTotal 31\n",
			"blkio.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 8192\nTotal 12288\n",
			"blkio.sectors_recursive":          "8:0 24\n",
			"blkio.io_queued_recursive":        "",
			"blkio.io_service_time_recursive":  "8:0 Read 7\n",
			"blkio.io_wait_time_recursive":     "8:0 Read 8\n",
			"blkio.io_merged_recursive":        "8:0 Read 9\n",
			"blkio.time_recursive":             "8:0 11\n",
		},
		"rdma":    {"rdma.current": "mlx4_0 hca_handle=2 hca_object=2000\nocrdma1 hca_handle=3 hca_object=max\n", "rdma.max": "mlx4_0 hca_handle=max hca_object=max\nocrdma1 hca_handle=-1 hca_object=7\n"},
		"hugetlb": hugetlb,
	}
}

const partitions = "major minor  #blocks  name\n\n   8        0  268435456 sda\n   7        1       1024 loop1\n   8        0  268435456 dup\n"

// Stat reads what the cgroups library reads, field for field: with every
// file, with the throttling counters instead of CFQ's, with files missing.
func TestStatMatchesLibrary(t *testing.T) {
	sizes := hostSizes(t)
	for _, tc := range []struct {
		name   string
		change func(files map[string]map[string]string)
	}{
		{"every file", func(map[string]map[string]string) {}},
		{"throttling counters only", func(files map[string]map[string]string) {
			files["blkio"] = map[string]string{
				"blkio.throttle.io_serviced":      "8:0 Read 3\n8:0 Write 4\nTotal 7\n",
				"blkio.throttle.io_service_bytes": "8:0 Read 300\n",
			}
		}},
		{"no swap accounting", func(files map[string]map[string]string) {
			for name := range files["memory"] {
				if strings.HasPrefix(name, "memory.memsw.") {
					delete(files["memory"], name)
				}
			}
		}},
		{"missing files", func(files map[string]map[string]string) {
			delete(files["pids"], "pids.max")
			delete(files["memory"], "memory.oom_control")
			delete(files["cpuacct"], "cpuacct.usage_percpu")
			delete(files["rdma"], "rdma.max")
			delete(files, "cpu")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := cgroupFiles(sizes)
			tc.change(files)
			want, got := statBoth(t, files)
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("Stat (-library +ours):\n%s", diff)
			}
		})
	}
}

// statBoth lays out files as a cgroup "/c" under a scratch root and reads
// it with the library and with Stat.
func statBoth(t *testing.T, files map[string]map[string]string) (want, got any) {
	t.Helper()
	root, proc := t.TempDir(), t.TempDir()
	writeFiles(t, proc, map[string]string{"partitions": partitions})
	partitionsFile = filepath.Join(proc, "partitions")
	t.Cleanup(func() { partitionsFile = "/proc/partitions" })
	c := Cgroup{}
	for ctrl, fs := range files {
		c[ctrl] = filepath.Join(root, ctrl, "c")
		writeFiles(t, c[ctrl], fs)
	}
	subsystems := []cgroup1.Subsystem{
		cgroup1.NewPids(root), cgroup1.NewCpu(root), cgroup1.NewCpuacct(root), cgroup1.NewMemory(root),
		cgroup1.NewBlkio(root, cgroup1.ProcRoot(proc)), cgroup1.NewRdma(root),
	}
	if h, err := cgroup1.NewHugetlb(root); err == nil {
		subsystems = append(subsystems, h)
	}
	subsystems = slices.DeleteFunc(subsystems, func(s cgroup1.Subsystem) bool { return files[string(s.Name())] == nil })
	lib, err := cgroup1.Load(cgroup1.StaticPath("/c"), cgroup1.WithHiearchy(func() ([]cgroup1.Subsystem, error) { return subsystems, nil }))
	if err != nil {
		t.Fatal(err)
	}
	libMetrics, err := lib.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		t.Fatalf("library: %v", err)
	}
	metrics, err := c.Stat()
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	return libMetrics, metrics
}

// A malformed file fails Stat, as it fails the library.
func TestStatMalformed(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"pids.current": "three\n", "pids.max": "max\n"})
	if _, err := (Cgroup{"pids": dir}).Stat(); err == nil {
		t.Error("Stat of a malformed pids.current succeeded")
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// requireV1 fails on hosts without cgroup v1 hierarchies: these tests
// read real v1 controllers (the project's machines are hybrid).
func requireV1(t *testing.T) {
	t.Helper()
	if mode := cgroups.Mode(); mode != cgroups.Legacy && mode != cgroups.Hybrid {
		t.Fatal("these tests need cgroup v1 hierarchies (legacy or hybrid mode); this host is unified")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the cgroup v1 tests need root")
	}
}

// On the host, Load finds the cgroup directories the library finds.
func TestLoadMatchesLibrary(t *testing.T) {
	requireV1(t)
	c, err := Load(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, ctrl := range []string{"memory", "cpu", "cpuacct", "pids", "blkio"} {
		path, err := cgroup1.PidPath(os.Getpid())(cgroup1.Name(ctrl))
		if err != nil {
			continue // not mounted here
		}
		if want := filepath.Join("/sys/fs/cgroup", ctrl, path); c[ctrl] != want {
			t.Errorf("%s cgroup = %q, the library's %q", ctrl, c[ctrl], want)
		}
	}
}

// A process added to a static cgroup is in it, in every hierarchy where
// the cgroup exists.
func TestStaticAddProc(t *testing.T) {
	requireV1(t)
	name := "berth-cgroupv1-test-" + strconv.Itoa(os.Getpid())
	var made []string
	for _, ctrl := range []string{"memory", "pids"} {
		dir := filepath.Join("/sys/fs/cgroup", ctrl, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		made = append(made, dir)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		for _, dir := range made {
			os.Remove(dir)
		}
	})
	c, err := Static("/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(maps.Keys(c)); !slices.Equal(got, []string{"memory", "pids"}) {
		t.Errorf("Static found the cgroup in %v, want memory and pids", got)
	}
	if err := c.AddProc(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, ctrl := range []string{"memory", "pids"} {
		if !strings.Contains(string(data), ":"+ctrl+":/"+name+"\n") {
			t.Errorf("after AddProc, /proc/<pid>/cgroup is\n%s\nwant %s in /%s", data, ctrl, name)
		}
	}
	if _, err := Static("/" + name + "-none"); !errdefs.IsNotFound(err) {
		t.Errorf("Static of a missing cgroup: %v, want NotFound", err)
	}
}
