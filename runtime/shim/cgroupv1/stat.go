package cgroupv1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup1/stats"
)

// clockTicks is USER_HZ, the unit of cpuacct.stat: 100 on every Linux.
const clockTicks = 100

// Where the kernel lists its huge page sizes, and its block devices by
// number; variables for the tests.
var (
	hugepagesDir   = "/sys/kernel/mm/hugepages"
	partitionsFile = "/proc/partitions"
)

// Stat reads the cgroup's metrics as the cgroups library's
// Stat(cgroup1.IgnoreNotExist) does: controller by controller, a missing
// file ending that controller's part (keeping what it read so far), any
// other error failing the whole.
func (c Cgroup) Stat() (*stats.Metrics, error) {
	m := &stats.Metrics{CPU: &stats.CPUStat{Throttling: &stats.Throttle{}, Usage: &stats.CPUUsage{}}}
	for _, ctrl := range []struct {
		name string
		read func(dir string, m *stats.Metrics) error
	}{
		{"pids", readPids},
		{"cpu", readCPU},
		{"cpuacct", readCPUAcct},
		{"memory", readMemory},
		{"blkio", readBlkio},
		{"rdma", readRdma},
		{"hugetlb", readHugetlb},
	} {
		dir, ok := c[ctrl.name]
		if !ok {
			continue
		}
		if err := ctrl.read(dir, m); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s cgroup %s: %w", ctrl.name, dir, err)
		}
	}
	return m, nil
}

func readPids(dir string, m *stats.Metrics) error {
	current, err := readUint(filepath.Join(dir, "pids.current"))
	if err != nil {
		return err
	}
	limit, err := readUint(filepath.Join(dir, "pids.max"))
	if err != nil {
		return err
	}
	m.Pids = &stats.PidsStat{Current: current, Limit: limit}
	return nil
}

func readCPU(dir string, m *stats.Metrics) error {
	return readKV(filepath.Join(dir, "cpu.stat"), func(key string, v uint64) {
		switch key {
		case "nr_periods":
			m.CPU.Throttling.Periods = v
		case "nr_throttled":
			m.CPU.Throttling.ThrottledPeriods = v
		case "throttled_time":
			m.CPU.Throttling.ThrottledTime = v
		}
	})
}

func readCPUAcct(dir string, m *stats.Metrics) error {
	path := filepath.Join(dir, "cpuacct.stat")
	times := map[string]uint64{}
	if err := readKV(path, func(key string, v uint64) { times[key] = v }); err != nil {
		return err
	}
	for _, key := range []string{"user", "system"} {
		if _, ok := times[key]; !ok {
			return fmt.Errorf("expected field %q but not found in %q", key, path)
		}
	}
	total, err := readUint(filepath.Join(dir, "cpuacct.usage"))
	if err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(dir, "cpuacct.usage_percpu"))
	if err != nil {
		return err
	}
	var percpu []uint64
	for _, f := range strings.Fields(string(data)) {
		u, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return err
		}
		percpu = append(percpu, u)
	}
	u := m.CPU.Usage
	u.Total, u.PerCPU = total, percpu
	u.User = times["user"] * 1e9 / clockTicks
	u.Kernel = times["system"] * 1e9 / clockTicks
	return nil
}

func readMemory(dir string, m *stats.Metrics) error {
	raw := map[string]uint64{}
	if err := readKV(filepath.Join(dir, "memory.stat"), func(key string, v uint64) { raw[key] = v }); err != nil {
		return err
	}
	ms := memoryStat(raw)
	m.Memory = ms
	oom := map[string]uint64{}
	if err := readKV(filepath.Join(dir, "memory.oom_control"), func(key string, v uint64) { oom[key] = v }); err != nil {
		return err
	}
	m.MemoryOomControl = &stats.MemoryOomControl{
		OomKillDisable: oom["oom_kill_disable"],
		UnderOom:       oom["under_oom"],
		OomKill:        oom["oom_kill"],
	}
	for _, e := range []struct {
		prefix string
		entry  *stats.MemoryEntry
	}{
		{"memory.", ms.Usage},
		{"memory.memsw.", ms.Swap},
		{"memory.kmem.", ms.Kernel},
		{"memory.kmem.tcp.", ms.KernelTCP},
	} {
		for _, f := range []struct {
			name  string
			value *uint64
		}{
			{"usage_in_bytes", &e.entry.Usage},
			{"max_usage_in_bytes", &e.entry.Max},
			{"failcnt", &e.entry.Failcnt},
			{"limit_in_bytes", &e.entry.Limit},
		} {
			v, err := readUint(filepath.Join(dir, e.prefix+f.name))
			if err != nil {
				return err
			}
			*f.value = v
		}
	}
	return nil
}

// memoryStat maps memory.stat's keys to the metrics' fields.
func memoryStat(raw map[string]uint64) *stats.MemoryStat {
	return &stats.MemoryStat{
		Cache:                   raw["cache"],
		RSS:                     raw["rss"],
		RSSHuge:                 raw["rss_huge"],
		MappedFile:              raw["mapped_file"],
		Dirty:                   raw["dirty"],
		Writeback:               raw["writeback"],
		PgPgIn:                  raw["pgpgin"],
		PgPgOut:                 raw["pgpgout"],
		PgFault:                 raw["pgfault"],
		PgMajFault:              raw["pgmajfault"],
		InactiveAnon:            raw["inactive_anon"],
		ActiveAnon:              raw["active_anon"],
		InactiveFile:            raw["inactive_file"],
		ActiveFile:              raw["active_file"],
		Unevictable:             raw["unevictable"],
		HierarchicalMemoryLimit: raw["hierarchical_memory_limit"],
		HierarchicalSwapLimit:   raw["hierarchical_memsw_limit"],
		TotalCache:              raw["total_cache"],
		TotalRSS:                raw["total_rss"],
		TotalRSSHuge:            raw["total_rss_huge"],
		TotalMappedFile:         raw["total_mapped_file"],
		TotalDirty:              raw["total_dirty"],
		TotalWriteback:          raw["total_writeback"],
		TotalPgPgIn:             raw["total_pgpgin"],
		TotalPgPgOut:            raw["total_pgpgout"],
		TotalPgFault:            raw["total_pgfault"],
		TotalPgMajFault:         raw["total_pgmajfault"],
		TotalInactiveAnon:       raw["total_inactive_anon"],
		TotalActiveAnon:         raw["total_active_anon"],
		TotalInactiveFile:       raw["total_inactive_file"],
		TotalActiveFile:         raw["total_active_file"],
		TotalUnevictable:        raw["total_unevictable"],
		Usage:                   &stats.MemoryEntry{},
		Swap:                    &stats.MemoryEntry{},
		Kernel:                  &stats.MemoryEntry{},
		KernelTCP:               &stats.MemoryEntry{},
	}
}

// readBlkio reads the CFQ scheduler's recursive counters, or where the
// cgroup has none, the throttling layer's.
func readBlkio(dir string, m *stats.Metrics) error {
	b := &stats.BlkIOStat{}
	m.Blkio = b
	devices, err := readPartitions()
	if err != nil {
		return err
	}
	if _, err := os.Lstat(filepath.Join(dir, "blkio.io_serviced_recursive")); err == nil {
		n := 0
		for _, f := range []struct {
			name  string
			entry *[]*stats.BlkIOEntry
		}{
			{"sectors_recursive", &b.SectorsRecursive},
			{"io_service_bytes_recursive", &b.IoServiceBytesRecursive},
			{"io_serviced_recursive", &b.IoServicedRecursive},
			{"io_queued_recursive", &b.IoQueuedRecursive},
			{"io_service_time_recursive", &b.IoServiceTimeRecursive},
			{"io_wait_time_recursive", &b.IoWaitTimeRecursive},
			{"io_merged_recursive", &b.IoMergedRecursive},
			{"time_recursive", &b.IoTimeRecursive},
		} {
			if err := readBlkioEntries(filepath.Join(dir, "blkio."+f.name), devices, f.entry); err != nil {
				return err
			}
			n += len(*f.entry)
		}
		if n > 0 {
			return nil
		}
	}
	if err := readBlkioEntries(filepath.Join(dir, "blkio.throttle.io_serviced"), devices, &b.IoServicedRecursive); err != nil {
		return err
	}
	return readBlkioEntries(filepath.Join(dir, "blkio.throttle.io_service_bytes"), devices, &b.IoServiceBytesRecursive)
}

type device struct{ major, minor uint64 }

// readPartitions maps block device numbers to /dev names.
func readPartitions() (map[device]string, error) {
	data, err := os.ReadFile(partitionsFile)
	if err != nil {
		return nil, err
	}
	devices := map[device]string{}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	for _, line := range lines[min(2, len(lines)):] {
		// major minor #blocks name
		f := strings.Fields(line)
		if len(f) < 4 {
			return nil, fmt.Errorf("%s: invalid line %q", partitionsFile, line)
		}
		major, err := strconv.Atoi(f[0])
		if err != nil {
			return nil, err
		}
		minor, err := strconv.Atoi(f[1])
		if err != nil {
			return nil, err
		}
		key := device{uint64(major), uint64(minor)}
		if _, ok := devices[key]; !ok {
			devices[key] = filepath.Join("/dev", f[3])
		}
	}
	return devices, nil
}

// readBlkioEntries reads lines "major:minor [op] value", and a "Total".
func readBlkioEntries(path string, devices map[device]string, entries *[]*stats.BlkIOEntry) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for line := range strings.Lines(string(data)) {
		f := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == ':' || r == '\n' })
		if len(f) == 2 && f[0] == "Total" {
			continue
		}
		if len(f) < 3 {
			return fmt.Errorf("invalid line found while parsing %s: %s", path, line)
		}
		major, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return err
		}
		minor, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return err
		}
		op, value := "", f[2]
		if len(f) == 4 {
			op, value = f[2], f[3]
		}
		v, err := strconv.ParseUint(value, 10, 64)
		if err != nil {
			return err
		}
		*entries = append(*entries, &stats.BlkIOEntry{
			Device: devices[device{major, minor}], Major: major, Minor: minor, Op: op, Value: v,
		})
	}
	return nil
}

func readRdma(dir string, m *stats.Metrics) error {
	current, err := os.ReadFile(filepath.Join(dir, "rdma.current"))
	if err != nil {
		return err
	}
	limit, err := os.ReadFile(filepath.Join(dir, "rdma.max"))
	if err != nil {
		return err
	}
	cur, lim := strings.Split(string(current), "\n"), strings.Split(string(limit), "\n")
	if len(cur) != len(lim) {
		return nil // a device went away between the two reads
	}
	m.Rdma = &stats.RdmaStat{Current: rdmaEntries(cur), Limit: rdmaEntries(lim)}
	return nil
}

// rdmaEntries reads lines "device hca_handle=N hca_object=N", N possibly
// "max".
func rdmaEntries(lines []string) []*stats.RdmaEntry {
	var entries []*stats.RdmaEntry
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		e := &stats.RdmaEntry{Device: f[0]}
		for _, kv := range f[1:] {
			key, value, ok := strings.Cut(kv, "=")
			if !ok || strings.Contains(value, "=") {
				continue
			}
			v := uint64(math.MaxUint32)
			if value != "max" {
				var err error
				if v, err = parseUint(value, 32); err != nil {
					continue
				}
			}
			switch key {
			case "hca_handle":
				e.HcaHandles = uint32(v)
			case "hca_object":
				e.HcaObjects = uint32(v)
			}
		}
		entries = append(entries, e)
	}
	return entries
}

func readHugetlb(dir string, m *stats.Metrics) error {
	sizes, err := hugePageSizes()
	if err != nil {
		return err
	}
	for _, size := range sizes {
		s := &stats.HugetlbStat{Pagesize: size}
		for _, f := range []struct {
			name  string
			value *uint64
		}{
			{"usage_in_bytes", &s.Usage},
			{"max_usage_in_bytes", &s.Max},
			{"failcnt", &s.Failcnt},
		} {
			v, err := readUint(filepath.Join(dir, "hugetlb."+size+"."+f.name))
			if err != nil {
				return err
			}
			*f.value = v
		}
		m.Hugetlb = append(m.Hugetlb, s)
	}
	return nil
}

// hugePageSizes names the kernel's huge page sizes as hugetlb's files do:
// "hugepages-2048kB" is "2MB".
func hugePageSizes() ([]string, error) {
	entries, err := os.ReadDir(hugepagesDir)
	if err != nil {
		return nil, err
	}
	var sizes []string
	for _, e := range entries {
		kb, ok := strings.CutSuffix(strings.TrimPrefix(e.Name(), "hugepages-"), "kB")
		n, err := strconv.ParseUint(kb, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("huge page size %q: %w", e.Name(), errors.ErrUnsupported)
		}
		size, unit := float64(n), 1 // in KB
		for ; size >= 1024 && unit < 5; unit++ {
			size /= 1024
		}
		sizes = append(sizes, strconv.FormatFloat(size, 'g', -1, 64)+[]string{"B", "KB", "MB", "GB", "TB", "PB"}[unit])
	}
	return sizes, nil
}

// readKV calls fn for each "key value" line of a file.
func readKV(path string, fn func(key string, v uint64)) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 0; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			return fmt.Errorf("%s: %d: invalid format", path, line)
		}
		v, err := parseUint(f[1], 64)
		if err != nil {
			return fmt.Errorf("%s: %d: %v", path, line, err)
		}
		fn(f[0], v)
	}
	return sc.Err()
}

// readUint reads a file holding one number, or "max" (read as 0).
func readUint(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := string(bytes.TrimSpace(data))
	if s == "max" {
		return 0, nil
	}
	return parseUint(s, 64)
}

// parseUint reads a counter, a negative one as 0 (the kernel prints -1
// for some unlimited values).
func parseUint(s string, bits int) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, bits)
	if err == nil {
		return v, nil
	}
	if i, ierr := strconv.ParseInt(s, 10, bits); ierr == nil && i < 0 || errors.Is(ierr, strconv.ErrRange) && strings.HasPrefix(s, "-") {
		return 0, nil
	}
	return 0, err
}
