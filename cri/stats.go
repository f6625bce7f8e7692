package cri

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/runtime/manager"
	cgstats "github.com/containerd/cgroups/v3/cgroup1/stats"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Container and pod stats come from the shims' cgroup metrics (cgroup v1,
// what berth's shim reports), the writable layer's usage from the
// snapshotter, and a pod's network from its pause process's
// /proc/<pid>/net/dev. CPU usage in nanocores is the rate between two
// samples, so the first call for a container reports none.

// cpuSample is the last CPU reading of a container, for usage_nano_cores.
type cpuSample struct {
	at    time.Time
	usage uint64 // nanoseconds
}

// cpuSamples keeps the last reading of each container.
type cpuSamples struct {
	mu   sync.Mutex
	last map[string]cpuSample
}

// rate records usage at at and returns the nanocores since the previous
// sample, 0 without one.
func (c *cpuSamples) rate(id string, at time.Time, usage uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[string]cpuSample{}
	}
	prev, ok := c.last[id]
	c.last[id] = cpuSample{at: at, usage: usage}
	if !ok || !at.After(prev.at) || usage < prev.usage {
		return 0
	}
	return uint64(float64(usage-prev.usage) / at.Sub(prev.at).Seconds())
}

func (c *cpuSamples) forget(id string) {
	c.mu.Lock()
	delete(c.last, id)
	c.mu.Unlock()
}

// taskMetrics asks task id's shim for its cgroup metrics; nil, nil when
// the task does not run.
func (s *Service) taskMetrics(ctx context.Context, id string) (*cgstats.Metrics, error) {
	t, err := s.deps.Tasks.Get(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	resp, err := t.Client().Stats(t.ShimContext(ctx), &taskapi.StatsRequest{ID: id})
	if err != nil {
		return nil, fmt.Errorf("stats of %q: %w", id, manager.ShimError(err))
	}
	v, err := typeurl.UnmarshalAny(resp.GetStats())
	if err != nil {
		return nil, fmt.Errorf("stats of %q: %w", id, err)
	}
	m, ok := v.(*cgstats.Metrics)
	if !ok {
		return nil, fmt.Errorf("stats of %q: unexpected type %T: %w", id, v, errdefs.ErrNotImplemented)
	}
	return m, nil
}

func (r *runtimeService) ContainerStats(ctx context.Context, req *runtime.ContainerStatsRequest) (*runtime.ContainerStatsResponse, error) {
	ctx = withNamespace(ctx)
	c, err := r.s.getContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	st, err := r.s.containerStats(ctx, c)
	if err != nil {
		return nil, err
	}
	return &runtime.ContainerStatsResponse{Stats: st}, nil
}

func (r *runtimeService) ListContainerStats(ctx context.Context, req *runtime.ListContainerStatsRequest) (*runtime.ListContainerStatsResponse, error) {
	stats, err := r.s.listContainerStats(withNamespace(ctx), req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtime.ListContainerStatsResponse{Stats: stats}, nil
}

func (r *runtimeService) StreamContainerStats(req *runtime.StreamContainerStatsRequest, stream grpc.ServerStreamingServer[runtime.StreamContainerStatsResponse]) error {
	stats, err := r.s.listContainerStats(withNamespace(stream.Context()), req.GetFilter())
	if err != nil {
		return err
	}
	for len(stats) > 0 {
		n := min(len(stats), streamImagesBatch)
		if err := stream.Send(&runtime.StreamContainerStatsResponse{ContainerStats: stats[:n]}); err != nil {
			return err
		}
		stats = stats[n:]
	}
	return nil
}

// listContainerStats reports the running containers matching f (ID, pod,
// labels), as containerd lists them.
func (s *Service) listContainerStats(ctx context.Context, f *runtime.ContainerStatsFilter) ([]*runtime.ContainerStats, error) {
	cf := &runtime.ContainerFilter{Id: f.GetId(), PodSandboxId: f.GetPodSandboxId(), LabelSelector: f.GetLabelSelector(),
		State: &runtime.ContainerStateValue{State: runtime.ContainerState_CONTAINER_RUNNING}}
	var out []*runtime.ContainerStats
	for _, item := range s.listContainers(cf) {
		c, err := s.getContainer(item.GetId())
		if err != nil {
			continue
		}
		st, err := s.containerStats(ctx, c)
		if err != nil {
			log.G(ctx).Debug("CRI: container stats", "id", c.meta.ID, "error", err)
			continue
		}
		out = append(out, st)
	}
	return out, nil
}

// containerStats reports one container: CPU and memory from its cgroup
// while it runs, its writable layer always.
func (s *Service) containerStats(ctx context.Context, c *container) (*runtime.ContainerStats, error) {
	now := time.Now()
	out := &runtime.ContainerStats{
		Attributes: &runtime.ContainerAttributes{Id: c.meta.ID, Metadata: c.config.GetMetadata(),
			Labels: c.config.GetLabels(), Annotations: c.config.GetAnnotations()},
		WritableLayer: s.writableLayer(ctx, c.meta.ID, now),
	}
	if c.getStatus().State != stateRunning {
		return out, nil
	}
	m, err := s.taskMetrics(ctx, c.meta.ID)
	if err != nil {
		return nil, err
	}
	out.Cpu, out.Memory, out.Swap = s.cpuStats(c.meta.ID, m, now), memoryStats(m, now), swapStats(m, now)
	return out, nil
}

func (s *Service) cpuStats(id string, m *cgstats.Metrics, now time.Time) *runtime.CpuUsage {
	out := &runtime.CpuUsage{Timestamp: now.UnixNano()}
	if u := m.GetCPU().GetUsage(); u != nil {
		out.UsageCoreNanoSeconds = &runtime.UInt64Value{Value: u.GetTotal()}
		out.UsageNanoCores = &runtime.UInt64Value{Value: s.cpu.rate(id, now, u.GetTotal())}
	}
	return out
}

// memoryStats follows the kubelet's reading of cgroup v1: the working set
// is the usage less the inactive file cache.
func memoryStats(m *cgstats.Metrics, now time.Time) *runtime.MemoryUsage {
	mem := m.GetMemory()
	out := &runtime.MemoryUsage{Timestamp: now.UnixNano()}
	if mem == nil {
		return out
	}
	usage := mem.GetUsage().GetUsage()
	ws := usage
	if inactive := mem.GetTotalInactiveFile(); inactive < ws {
		ws -= inactive
	} else {
		ws = 0
	}
	out.UsageBytes = &runtime.UInt64Value{Value: usage}
	out.WorkingSetBytes = &runtime.UInt64Value{Value: ws}
	out.RssBytes = &runtime.UInt64Value{Value: mem.GetTotalRSS()}
	out.PageFaults = &runtime.UInt64Value{Value: mem.GetTotalPgFault()}
	out.MajorPageFaults = &runtime.UInt64Value{Value: mem.GetTotalPgMajFault()}
	if limit := mem.GetUsage().GetLimit(); limit > 0 && limit < 1<<62 && limit > ws {
		out.AvailableBytes = &runtime.UInt64Value{Value: limit - ws}
	}
	return out
}

func swapStats(m *cgstats.Metrics, now time.Time) *runtime.SwapUsage {
	out := &runtime.SwapUsage{Timestamp: now.UnixNano()}
	if sw := m.GetMemory().GetSwap(); sw != nil {
		usage := uint64(0)
		if u := sw.GetUsage(); u > m.GetMemory().GetUsage().GetUsage() {
			usage = u - m.GetMemory().GetUsage().GetUsage() // memsw counts memory too
		}
		out.SwapUsageBytes = &runtime.UInt64Value{Value: usage}
	}
	return out
}

// writableLayer is the usage of the container's snapshot.
func (s *Service) writableLayer(ctx context.Context, key string, now time.Time) *runtime.FilesystemUsage {
	out := &runtime.FilesystemUsage{Timestamp: now.UnixNano(), FsId: &runtime.FilesystemIdentifier{Mountpoint: s.fsUsage.dir}}
	if u, err := s.deps.Snapshotter.Usage(ctx, key); err == nil {
		out.UsedBytes = &runtime.UInt64Value{Value: uint64(u.Size)}
		out.InodesUsed = &runtime.UInt64Value{Value: uint64(u.Inodes)}
	}
	return out
}

func (r *runtimeService) PodSandboxStats(ctx context.Context, req *runtime.PodSandboxStatsRequest) (*runtime.PodSandboxStatsResponse, error) {
	ctx = withNamespace(ctx)
	sb, err := r.s.getSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	st, err := r.s.sandboxStats(ctx, sb)
	if err != nil {
		return nil, err
	}
	return &runtime.PodSandboxStatsResponse{Stats: st}, nil
}

func (r *runtimeService) ListPodSandboxStats(ctx context.Context, req *runtime.ListPodSandboxStatsRequest) (*runtime.ListPodSandboxStatsResponse, error) {
	stats := r.s.listSandboxStats(withNamespace(ctx), req.GetFilter())
	return &runtime.ListPodSandboxStatsResponse{Stats: stats}, nil
}

func (r *runtimeService) StreamPodSandboxStats(req *runtime.StreamPodSandboxStatsRequest, stream grpc.ServerStreamingServer[runtime.StreamPodSandboxStatsResponse]) error {
	stats := r.s.listSandboxStats(withNamespace(stream.Context()), req.GetFilter())
	for len(stats) > 0 {
		n := min(len(stats), streamImagesBatch)
		if err := stream.Send(&runtime.StreamPodSandboxStatsResponse{PodSandboxStats: stats[:n]}); err != nil {
			return err
		}
		stats = stats[n:]
	}
	return nil
}

func (s *Service) listSandboxStats(ctx context.Context, f *runtime.PodSandboxStatsFilter) []*runtime.PodSandboxStats {
	pf := &runtime.PodSandboxFilter{Id: f.GetId(), LabelSelector: f.GetLabelSelector(),
		State: &runtime.PodSandboxStateValue{State: runtime.PodSandboxState_SANDBOX_READY}}
	var out []*runtime.PodSandboxStats
	for _, item := range s.listSandboxes(ctx, pf) {
		sb, err := s.getSandbox(item.GetId())
		if err != nil {
			continue
		}
		st, err := s.sandboxStats(ctx, sb)
		if err != nil {
			log.G(ctx).Debug("CRI: pod stats", "id", sb.meta.ID, "error", err)
			continue
		}
		out = append(out, st)
	}
	return out
}

// sandboxStats reports a pod: the pause process's cgroup plus its
// containers' CPU, memory and process counts, its network interfaces, and
// each container.
func (s *Service) sandboxStats(ctx context.Context, sb *sandbox) (*runtime.PodSandboxStats, error) {
	now := time.Now()
	linux := &runtime.LinuxPodSandboxStats{
		Cpu:     &runtime.CpuUsage{Timestamp: now.UnixNano()},
		Memory:  &runtime.MemoryUsage{Timestamp: now.UnixNano()},
		Process: &runtime.ProcessUsage{Timestamp: now.UnixNano()},
	}
	var cpuTotal, memUsage, memWS, procs uint64
	add := func(m *cgstats.Metrics) {
		if m == nil {
			return
		}
		cpuTotal += m.GetCPU().GetUsage().GetTotal()
		if mem := memoryStats(m, now); mem.UsageBytes != nil {
			memUsage += mem.UsageBytes.Value
			memWS += mem.WorkingSetBytes.Value
		}
		procs += m.GetPids().GetCurrent()
	}
	st := sb.getStatus()
	if st.Ready {
		m, err := s.taskMetrics(ctx, sb.meta.ID)
		if err != nil {
			return nil, err
		}
		add(m)
	}
	for _, c := range s.containersOf(sb.meta.ID) {
		cs, err := s.containerStats(ctx, c)
		if err != nil {
			continue
		}
		linux.Containers = append(linux.Containers, cs)
		if c.getStatus().State == stateRunning {
			if m, err := s.taskMetrics(ctx, c.meta.ID); err == nil {
				add(m)
			}
		}
	}
	linux.Cpu.UsageCoreNanoSeconds = &runtime.UInt64Value{Value: cpuTotal}
	linux.Cpu.UsageNanoCores = &runtime.UInt64Value{Value: s.cpu.rate(sb.meta.ID, now, cpuTotal)}
	linux.Memory.UsageBytes = &runtime.UInt64Value{Value: memUsage}
	linux.Memory.WorkingSetBytes = &runtime.UInt64Value{Value: memWS}
	linux.Process.ProcessCount = &runtime.UInt64Value{Value: procs}
	if st.Ready && st.Pid > 0 {
		linux.Network = networkStats(st.Pid, now)
	}
	return &runtime.PodSandboxStats{
		Attributes: &runtime.PodSandboxAttributes{Id: sb.meta.ID, Metadata: sb.config.GetMetadata(),
			Labels: sb.config.GetLabels(), Annotations: sb.config.GetAnnotations()},
		Linux: linux,
	}, nil
}

// networkStats reads the interfaces of the network namespace of pid from
// /proc/<pid>/net/dev; eth0 is the default interface.
func networkStats(pid uint32, now time.Time) *runtime.NetworkUsage {
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		return nil
	}
	defer f.Close()
	out := &runtime.NetworkUsage{Timestamp: now.UnixNano()}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		name = strings.TrimSpace(name)
		if !ok || name == "lo" {
			continue
		}
		// receive: bytes packets errs drop fifo frame compressed multicast; transmit: bytes packets errs ...
		f := strings.Fields(rest)
		if len(f) < 11 {
			continue
		}
		n := func(i int) *runtime.UInt64Value {
			v, _ := strconv.ParseUint(f[i], 10, 64)
			return &runtime.UInt64Value{Value: v}
		}
		iface := &runtime.NetworkInterfaceUsage{Name: name, RxBytes: n(0), RxErrors: n(2), TxBytes: n(8), TxErrors: n(10)}
		out.Interfaces = append(out.Interfaces, iface)
		if name == "eth0" {
			out.DefaultInterface = iface
		}
	}
	return out
}
