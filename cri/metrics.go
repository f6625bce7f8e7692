package cri

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	cgstats "github.com/containerd/cgroups/v3/cgroup1/stats"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The CRI metrics (ListMetricDescriptors, ListPodSandboxMetrics) are
// cAdvisor's container_* metrics, which the kubelet serves on /metrics/cadvisor
// when the runtime provides them: read from the shims' cgroup v1 stats, the
// processes in /proc and the snapshots' file system. Every metric carries
// the base labels; some add their own after them.

// baseLabelKeys label every metric: the container's name, its ID, its
// image and the pod's name ("POD" and the sandbox ID for the pod's own
// network metrics).
var baseLabelKeys = []string{"container", "id", "image", "name"}

// metricDef describes one metric: its help and the labels it adds to the
// base ones.
type metricDef struct {
	help  string
	extra []string
}

// metricDefs are the metrics berth reports. Left out as cAdvisor's
// optional ones: hugetlb, pressure (PSI is cgroup v2), memory reservation
// and ulimits.
var metricDefs = map[string]metricDef{
	"container_blkio_device_usage_total":               {"Blkio device bytes usage", []string{"device", "major", "minor", "operation"}},
	"container_cpu_cfs_periods_total":                  {"Number of elapsed enforcement period intervals.", nil},
	"container_cpu_cfs_throttled_periods_total":        {"Number of throttled period intervals.", nil},
	"container_cpu_cfs_throttled_seconds_total":        {"Total time duration the container has been throttled.", nil},
	"container_cpu_system_seconds_total":               {"Cumulative system cpu time consumed in seconds.", nil},
	"container_cpu_usage_seconds_total":                {"Cumulative cpu time consumed in seconds.", []string{"cpu"}},
	"container_cpu_user_seconds_total":                 {"Cumulative user cpu time consumed in seconds.", nil},
	"container_file_descriptors":                       {"Number of open file descriptors for the container.", nil},
	"container_fs_inodes_free":                         {"Number of available Inodes", []string{"device"}},
	"container_fs_inodes_total":                        {"Number of Inodes", []string{"device"}},
	"container_fs_limit_bytes":                         {"Number of bytes that can be consumed by the container on this filesystem.", []string{"device"}},
	"container_fs_reads_bytes_total":                   {"Cumulative count of bytes read", []string{"device"}},
	"container_fs_reads_total":                         {"Cumulative count of reads completed", []string{"device"}},
	"container_fs_usage_bytes":                         {"Number of bytes that are consumed by the container on this filesystem.", []string{"device"}},
	"container_fs_writes_bytes_total":                  {"Cumulative count of bytes written", []string{"device"}},
	"container_fs_writes_total":                        {"Cumulative count of writes completed", []string{"device"}},
	"container_last_seen":                              {"Last time a container was seen by the exporter", nil},
	"container_memory_cache":                           {"Number of bytes of page cache memory.", nil},
	"container_memory_failcnt":                         {"Number of memory usage hits limits", nil},
	"container_memory_failures_total":                  {"Cumulative count of memory allocation failures.", []string{"failure_type", "scope"}},
	"container_memory_kernel_usage":                    {"Size of kernel memory allocated in bytes.", nil},
	"container_memory_mapped_file":                     {"Size of memory mapped files in bytes.", nil},
	"container_memory_max_usage_bytes":                 {"Maximum memory usage recorded in bytes", nil},
	"container_memory_rss":                             {"Size of RSS in bytes.", nil},
	"container_memory_swap":                            {"Container swap usage in bytes.", nil},
	"container_memory_usage_bytes":                     {"Current memory usage in bytes, including all memory regardless of when it was accessed", nil},
	"container_memory_working_set_bytes":               {"Current working set in bytes.", nil},
	"container_network_receive_bytes_total":            {"Cumulative count of bytes received", []string{"interface"}},
	"container_network_receive_errors_total":           {"Cumulative count of errors encountered while receiving", []string{"interface"}},
	"container_network_receive_packets_dropped_total":  {"Cumulative count of packets dropped while receiving", []string{"interface"}},
	"container_network_receive_packets_total":          {"Cumulative count of packets received", []string{"interface"}},
	"container_network_transmit_bytes_total":           {"Cumulative count of bytes transmitted", []string{"interface"}},
	"container_network_transmit_errors_total":          {"Cumulative count of errors encountered while transmitting", []string{"interface"}},
	"container_network_transmit_packets_dropped_total": {"Cumulative count of packets dropped while transmitting", []string{"interface"}},
	"container_network_transmit_packets_total":         {"Cumulative count of packets transmitted", []string{"interface"}},
	"container_oom_events_total":                       {"Count of out of memory events observed for the container", nil},
	"container_processes":                              {"Number of processes running inside the container.", nil},
	"container_sockets":                                {"Number of open sockets for the container.", nil},
	"container_spec_cpu_period":                        {"CPU period of the container.", nil},
	"container_spec_cpu_quota":                         {"CPU quota of the container.", nil},
	"container_spec_cpu_shares":                        {"CPU share of the container.", nil},
	"container_spec_memory_limit_bytes":                {"Memory limit for the container.", nil},
	"container_spec_memory_swap_limit_bytes":           {"Memory swap limit for the container.", nil},
	"container_start_time_seconds":                     {"Start time of the container since unix epoch in seconds.", nil},
	"container_threads":                                {"Number of threads running inside the container", nil},
	"container_threads_max":                            {"Maximum number of threads allowed inside the container, infinity if value is zero", nil},
}

// metricDescriptors lists metricDefs as the CRI describes them.
func metricDescriptors() []*runtime.MetricDescriptor {
	out := make([]*runtime.MetricDescriptor, 0, len(metricDefs))
	for _, name := range slices.Sorted(maps.Keys(metricDefs)) {
		d := metricDefs[name]
		keys := append(append([]string{}, baseLabelKeys...), d.extra...)
		out = append(out, &runtime.MetricDescriptor{Name: name, Help: d.help, LabelKeys: keys})
	}
	return out
}

func (r *runtimeService) ListMetricDescriptors(context.Context, *runtime.ListMetricDescriptorsRequest) (*runtime.ListMetricDescriptorsResponse, error) {
	return &runtime.ListMetricDescriptorsResponse{Descriptors: metricDescriptors()}, nil
}

func (r *runtimeService) ListPodSandboxMetrics(ctx context.Context, _ *runtime.ListPodSandboxMetricsRequest) (*runtime.ListPodSandboxMetricsResponse, error) {
	ctx = withNamespace(ctx)
	pf := &runtime.PodSandboxFilter{State: &runtime.PodSandboxStateValue{State: runtime.PodSandboxState_SANDBOX_READY}}
	var out []*runtime.PodSandboxMetrics
	for _, item := range r.s.listSandboxes(ctx, pf) {
		sb, err := r.s.getSandbox(item.GetId())
		if err != nil {
			continue
		}
		out = append(out, r.s.sandboxMetrics(ctx, sb))
	}
	return &runtime.ListPodSandboxMetricsResponse{PodMetrics: out}, nil
}

// metricSet collects the metrics of one container (or of the pod) under
// its base label values.
type metricSet struct {
	base []string
	now  int64
	out  []*runtime.Metric
}

// add appends a metric of metricDefs; extra are its own label values.
func (m *metricSet) add(name string, typ runtime.MetricType, v uint64, extra ...string) {
	m.out = append(m.out, &runtime.Metric{Name: name, Timestamp: m.now, MetricType: typ,
		LabelValues: append(append([]string{}, m.base...), extra...), Value: &runtime.UInt64Value{Value: v}})
}

func (m *metricSet) gauge(name string, v uint64, extra ...string) {
	m.add(name, runtime.MetricType_GAUGE, v, extra...)
}

func (m *metricSet) counter(name string, v uint64, extra ...string) {
	m.add(name, runtime.MetricType_COUNTER, v, extra...)
}

// sandboxMetrics are the pod's network metrics (from the pause process's
// network namespace) and each running container's metrics.
func (s *Service) sandboxMetrics(ctx context.Context, sb *sandbox) *runtime.PodSandboxMetrics {
	now := time.Now()
	name := sb.config.GetMetadata().GetName()
	out := &runtime.PodSandboxMetrics{PodSandboxId: sb.meta.ID}
	if st := sb.getStatus(); st.Ready && st.Pid > 0 {
		pod := &metricSet{base: []string{"POD", sb.meta.ID, "", name}, now: now.UnixNano()}
		podNetworkMetrics(pod, st.Pid)
		out.Metrics = pod.out
	}
	for _, c := range s.containersOf(sb.meta.ID) {
		st := c.getStatus()
		if st.State != stateRunning {
			continue
		}
		m, err := s.taskMetrics(ctx, c.meta.ID)
		if err != nil || m == nil {
			continue
		}
		set := &metricSet{base: []string{c.config.GetMetadata().GetName(), c.meta.ID, c.meta.ImageName, name}, now: now.UnixNano()}
		cgroupMetrics(set, m)
		processMetrics(set, st.Pid)
		s.fsMetrics(ctx, set, c.meta.ID)
		specMetrics(set, c.resources())
		set.gauge("container_start_time_seconds", uint64(st.StartedAt/int64(time.Second)))
		set.gauge("container_last_seen", uint64(now.Unix()))
		out.ContainerMetrics = append(out.ContainerMetrics, &runtime.ContainerMetrics{ContainerId: c.meta.ID, Metrics: set.out})
	}
	return out
}

// podNetworkMetrics are the counters of the interfaces (but lo) in
// /proc/<pid>/net/dev: receive bytes packets errs drop fifo frame
// compressed multicast, then transmit bytes packets errs drop.
func podNetworkMetrics(set *metricSet, pid uint32) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		return
	}
	names := map[int]string{
		0: "container_network_receive_bytes_total", 1: "container_network_receive_packets_total",
		2: "container_network_receive_errors_total", 3: "container_network_receive_packets_dropped_total",
		8: "container_network_transmit_bytes_total", 9: "container_network_transmit_packets_total",
		10: "container_network_transmit_errors_total", 11: "container_network_transmit_packets_dropped_total",
	}
	for _, line := range strings.Split(string(data), "\n") {
		iface, rest, ok := strings.Cut(line, ":")
		iface = strings.TrimSpace(iface)
		f := strings.Fields(rest)
		if !ok || iface == "lo" || len(f) < 12 {
			continue
		}
		for i, name := range names {
			v, _ := strconv.ParseUint(f[i], 10, 64)
			set.counter(name, v, iface)
		}
	}
}

// cgroupMetrics are the CPU, memory, pids and blkio metrics of the
// container's cgroup v1 stats. Times are whole seconds: the CRI's metric
// values are integers, where cAdvisor's are floats.
func cgroupMetrics(set *metricSet, m *cgstats.Metrics) {
	cpu := m.GetCPU()
	set.counter("container_cpu_usage_seconds_total", cpu.GetUsage().GetTotal()/uint64(time.Second), "total")
	set.counter("container_cpu_user_seconds_total", cpu.GetUsage().GetUser()/uint64(time.Second))
	set.counter("container_cpu_system_seconds_total", cpu.GetUsage().GetKernel()/uint64(time.Second))
	set.counter("container_cpu_cfs_periods_total", cpu.GetThrottling().GetPeriods())
	set.counter("container_cpu_cfs_throttled_periods_total", cpu.GetThrottling().GetThrottledPeriods())
	set.counter("container_cpu_cfs_throttled_seconds_total", cpu.GetThrottling().GetThrottledTime()/uint64(time.Second))

	mem := m.GetMemory()
	ms := memoryStats(m, time.Now())
	set.gauge("container_memory_usage_bytes", mem.GetUsage().GetUsage())
	set.gauge("container_memory_working_set_bytes", ms.GetWorkingSetBytes().GetValue())
	set.gauge("container_memory_rss", mem.GetTotalRSS())
	set.gauge("container_memory_cache", mem.GetTotalCache())
	set.gauge("container_memory_mapped_file", mem.GetTotalMappedFile())
	set.gauge("container_memory_max_usage_bytes", mem.GetUsage().GetMax())
	set.gauge("container_memory_kernel_usage", mem.GetKernel().GetUsage())
	set.counter("container_memory_failcnt", mem.GetUsage().GetFailcnt())
	set.gauge("container_memory_swap", swapStats(m, time.Now()).GetSwapUsageBytes().GetValue())
	set.counter("container_memory_failures_total", mem.GetPgFault(), "pgfault", "container")
	set.counter("container_memory_failures_total", mem.GetPgMajFault(), "pgmajfault", "container")
	set.counter("container_memory_failures_total", mem.GetTotalPgFault(), "pgfault", "hierarchy")
	set.counter("container_memory_failures_total", mem.GetTotalPgMajFault(), "pgmajfault", "hierarchy")
	set.counter("container_oom_events_total", m.GetMemoryOomControl().GetOomKill())

	set.gauge("container_processes", m.GetPids().GetCurrent())
	set.gauge("container_threads_max", m.GetPids().GetLimit())
	blkioMetrics(set, m.GetBlkio())
}

// blkioMetrics are the per-device byte and operation counts of the
// blkio controller, where the kernel accounts them.
func blkioMetrics(set *metricSet, b *cgstats.BlkIOStat) {
	for _, e := range b.GetIoServiceBytesRecursive() {
		dev := fmt.Sprintf("%d:%d", e.GetMajor(), e.GetMinor())
		set.counter("container_blkio_device_usage_total", e.GetValue(), dev, fmt.Sprint(e.GetMajor()), fmt.Sprint(e.GetMinor()), e.GetOp())
		switch strings.ToLower(e.GetOp()) {
		case "read":
			set.counter("container_fs_reads_bytes_total", e.GetValue(), dev)
		case "write":
			set.counter("container_fs_writes_bytes_total", e.GetValue(), dev)
		}
	}
	for _, e := range b.GetIoServicedRecursive() {
		dev := fmt.Sprintf("%d:%d", e.GetMajor(), e.GetMinor())
		switch strings.ToLower(e.GetOp()) {
		case "read":
			set.counter("container_fs_reads_total", e.GetValue(), dev)
		case "write":
			set.counter("container_fs_writes_total", e.GetValue(), dev)
		}
	}
}

// processMetrics count the threads, file descriptors and sockets of the
// container's init process.
func processMetrics(set *metricSet, pid uint32) {
	var threads, fds, sockets uint64
	if pid > 0 {
		if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			for _, line := range strings.Split(string(data), "\n") {
				if v, ok := strings.CutPrefix(line, "Threads:"); ok {
					threads, _ = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				}
			}
		}
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			fds++
			if target, err := os.Readlink(dir + "/" + e.Name()); err == nil && strings.HasPrefix(target, "socket:") {
				sockets++
			}
		}
	}
	set.gauge("container_threads", threads)
	set.gauge("container_file_descriptors", fds)
	set.gauge("container_sockets", sockets)
}

// fsMetrics are the writable layer's usage and its file system's size.
func (s *Service) fsMetrics(ctx context.Context, set *metricSet, id string) {
	dev := s.fsUsage.dir
	if u := s.writableLayer(ctx, id, time.Now()); u.GetUsedBytes() != nil {
		set.gauge("container_fs_usage_bytes", u.GetUsedBytes().GetValue(), dev)
	}
	var st unix.Statfs_t
	if unix.Statfs(dev, &st) != nil {
		return
	}
	set.gauge("container_fs_limit_bytes", st.Blocks*uint64(st.Bsize), dev)
	set.gauge("container_fs_inodes_total", st.Files, dev)
	set.gauge("container_fs_inodes_free", st.Ffree, dev)
}

// specMetrics are the limits the container runs with.
func specMetrics(set *metricSet, r *runtime.LinuxContainerResources) {
	set.gauge("container_spec_cpu_period", uint64(r.GetCpuPeriod()))
	set.gauge("container_spec_cpu_quota", uint64(max(r.GetCpuQuota(), 0)))
	set.gauge("container_spec_cpu_shares", uint64(r.GetCpuShares()))
	set.gauge("container_spec_memory_limit_bytes", uint64(r.GetMemoryLimitInBytes()))
	set.gauge("container_spec_memory_swap_limit_bytes", uint64(max(r.GetMemorySwapLimitInBytes(), 0)))
}
