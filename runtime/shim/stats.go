package shim

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/runtime/shim/cgroupv1"
	"github.com/containerd/cgroups/v3"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
)

// Stats reports the task's cgroup metrics (io.containerd.cgroups.v1.Metrics)
// from the cgroup v1 hierarchies its init process is in. cgroup v2 hosts
// are not supported yet: their metrics type would pull eBPF support into
// the shim for little use so far.
func (s *Service) Stats(ctx context.Context, req *taskapi.StatsRequest) (*taskapi.StatsResponse, error) {
	c, err := s.container(req.ID)
	if err != nil {
		return nil, err
	}
	pid, err := c.init.running()
	if err != nil {
		return nil, err
	}
	if mode := cgroups.Mode(); mode != cgroups.Legacy && mode != cgroups.Hybrid {
		return nil, fmt.Errorf("stats of task %q: only cgroup v1 hosts are supported: %w", req.ID, errdefs.ErrNotImplemented)
	}
	cg, err := cgroupv1.Load(pid)
	if err != nil {
		return nil, fmt.Errorf("stats of task %q: %w", req.ID, err)
	}
	metrics, err := cg.Stat()
	if err != nil {
		return nil, fmt.Errorf("stats of task %q: %w", req.ID, err)
	}
	a, err := typeurl.MarshalAnyToProto(metrics)
	if err != nil {
		return nil, fmt.Errorf("stats of task %q: %w", req.ID, err)
	}
	return &taskapi.StatsResponse{Stats: a}, nil
}
