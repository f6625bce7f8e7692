package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth-dev/berth/oci"
	"github.com/berth-dev/berth/runtime/manager"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (r *runtimeService) ContainerStatus(ctx context.Context, req *runtime.ContainerStatusRequest) (*runtime.ContainerStatusResponse, error) {
	ctx = withNamespace(ctx)
	c, err := r.s.getContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	resp := &runtime.ContainerStatusResponse{Status: r.s.criContainerStatus(c)}
	if req.GetVerbose() {
		resp.Info = map[string]string{"info": mustJSON(r.s.containerInfo(ctx, c))}
	}
	return resp, nil
}

// criContainerStatus is the CRI's status of a container. image is the
// image's first tag (else the reference the config gave), image_ref its
// repo digest (else its ID), image_id its ID, as PullImage answers it.
func (s *Service) criContainerStatus(c *container) *runtime.ContainerStatus {
	st := c.getStatus()
	cfg := c.config
	image := c.meta.ImageName
	if image == "" {
		image = cfg.GetImage().GetImage()
	}
	ref := c.meta.RepoDigest
	if ref == "" {
		ref = c.meta.ImageID
	}
	out := &runtime.ContainerStatus{
		Id:          c.meta.ID,
		Metadata:    cfg.GetMetadata(),
		State:       criState(st.State),
		CreatedAt:   c.meta.CreatedAt,
		StartedAt:   st.StartedAt,
		FinishedAt:  st.FinishedAt,
		ExitCode:    st.ExitCode,
		Image:       &runtime.ImageSpec{Image: image, UserSpecifiedImage: cfg.GetImage().GetUserSpecifiedImage(), Annotations: cfg.GetImage().GetAnnotations()},
		ImageRef:    ref,
		ImageId:     c.meta.ImageID,
		Reason:      st.Reason,
		Message:     st.Message,
		Labels:      cfg.GetLabels(),
		Annotations: cfg.GetAnnotations(),
		Mounts:      cfg.GetMounts(),
		LogPath:     c.meta.LogPath,
		Resources:   &runtime.ContainerResources{Linux: c.resources()},
		User: &runtime.ContainerUser{Linux: &runtime.LinuxContainerUser{
			Uid: int64(c.meta.User.UID), Gid: int64(c.meta.User.GID), SupplementalGroups: gids(c.meta.User.AdditionalGids),
		}},
	}
	if sig, err := oci.ParseSignal(c.meta.StopSignal); err == nil && c.meta.StopSignal != "" {
		out.StopSignal = criSignal(sig)
	}
	return out
}

func gids(g []uint32) []int64 {
	out := make([]int64, len(g))
	for i, v := range g {
		out[i] = int64(v)
	}
	return out
}

// criSignal is the CRI's name of sig ("SIGTERM").
func criSignal(sig syscall.Signal) runtime.Signal {
	if v, ok := runtime.Signal_value["SIGNAL_"+unix.SignalName(sig)]; ok {
		return runtime.Signal(v)
	}
	return runtime.Signal_SIGNAL_RUNTIME_DEFAULT
}

// resources are the container's limits: the last UpdateContainerResources,
// else the config's.
func (c *container) resources() *runtime.LinuxContainerResources {
	if raw := c.getStatus().Resources; len(raw) > 0 {
		var r runtime.LinuxContainerResources
		if protojson.Unmarshal(raw, &r) == nil {
			return &r
		}
	}
	return c.config.GetLinux().GetResources()
}

// containerInfoJSON is the verbose status, with containerd's JSON names.
type containerInfoJSON struct {
	SandboxID      string          `json:"sandboxID"`
	Pid            uint32          `json:"pid"`
	Removing       bool            `json:"removing"`
	SnapshotKey    string          `json:"snapshotKey"`
	Snapshotter    string          `json:"snapshotter"`
	RuntimeHandler string          `json:"runtimeHandler"`
	RuntimeType    string          `json:"runtimeType"`
	RuntimeOptions any             `json:"runtimeOptions,omitempty"`
	Config         json.RawMessage `json:"config"`
	RuntimeSpec    json.RawMessage `json:"runtimeSpec,omitempty"`
}

func (s *Service) containerInfo(ctx context.Context, c *container) containerInfoJSON {
	st := c.getStatus()
	info := containerInfoJSON{
		SandboxID: c.meta.SandboxID, SnapshotKey: c.meta.ID, Snapshotter: s.cfg.Snapshotter,
		RuntimeHandler: c.meta.Handler, RuntimeType: c.meta.RuntimeType, Config: c.meta.Config,
	}
	if st.State == stateRunning {
		info.Pid = st.Pid
	}
	if h, err := s.handlers.Get(c.meta.Handler); err == nil {
		info.RuntimeOptions = h.Options
	}
	if rec, err := s.deps.Containers.Get(ctx, c.meta.ID); err == nil && rec.Spec != nil {
		info.RuntimeSpec = rec.Spec.GetValue()
	}
	return info
}

func (r *runtimeService) ListContainers(ctx context.Context, req *runtime.ListContainersRequest) (*runtime.ListContainersResponse, error) {
	return &runtime.ListContainersResponse{Containers: r.s.listContainers(req.GetFilter())}, nil
}

func (r *runtimeService) StreamContainers(req *runtime.StreamContainersRequest, stream grpc.ServerStreamingServer[runtime.StreamContainersResponse]) error {
	items := r.s.listContainers(req.GetFilter())
	for len(items) > 0 {
		n := min(len(items), streamImagesBatch)
		if err := stream.Send(&runtime.StreamContainersResponse{Containers: items[:n]}); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

// listContainers lists the containers matching f: ID (or prefix), pod
// (or prefix), state, labels.
func (s *Service) listContainers(f *runtime.ContainerFilter) []*runtime.Container {
	cands := s.containers.list()
	if id := f.GetId(); id != "" {
		c, err := s.getContainer(id)
		if err != nil {
			return nil
		}
		cands = []*container{c}
	}
	podID := ""
	if p := f.GetPodSandboxId(); p != "" {
		sb, err := s.getSandbox(p)
		if err != nil {
			return nil
		}
		podID = sb.meta.ID
	}
	var out []*runtime.Container
	for _, c := range cands {
		st := s.criContainerStatus(c)
		switch {
		case podID != "" && c.meta.SandboxID != podID:
			continue
		case f.GetState() != nil && f.GetState().GetState() != st.State:
			continue
		case !labelsMatch(c.config.GetLabels(), f.GetLabelSelector()):
			continue
		}
		out = append(out, &runtime.Container{
			Id: c.meta.ID, PodSandboxId: c.meta.SandboxID, Metadata: st.Metadata, Image: st.Image,
			ImageRef: c.meta.ImageID, ImageId: c.meta.ImageID, State: st.State, CreatedAt: st.CreatedAt,
			Labels: st.Labels, Annotations: st.Annotations,
		})
	}
	return out
}

// resourcesTypeURL is how containerd clients send a runtime-spec
// LinuxResources to a shim.
const resourcesTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"

func (r *runtimeService) UpdateContainerResources(ctx context.Context, req *runtime.UpdateContainerResourcesRequest) (*runtime.UpdateContainerResourcesResponse, error) {
	ctx = withNamespace(ctx)
	c, err := r.s.getContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if err := r.s.updateResources(ctx, c, req.GetLinux()); err != nil {
		return nil, err
	}
	return &runtime.UpdateContainerResourcesResponse{}, nil
}

// updateResources changes the limits in the recorded spec (for the next
// start) and, for a running container, in its cgroup (runc update).
func (s *Service) updateResources(ctx context.Context, c *container, res *runtime.LinuxContainerResources) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.meta.ID
	if res == nil {
		return nil
	}
	rec, err := s.deps.Containers.Get(ctx, id)
	if err != nil {
		return err
	}
	var spec specs.Spec
	if err := json.Unmarshal(rec.Spec.GetValue(), &spec); err != nil {
		return fmt.Errorf("update container %q: decode its spec: %w", id, err)
	}
	if err := oci.WithResources(linuxResources(res))(ctx, &spec); err != nil {
		return err
	}
	b, err := json.Marshal(&spec)
	if err != nil {
		return err
	}
	rec.Spec = &anypb.Any{TypeUrl: rec.Spec.GetTypeUrl(), Value: b}
	if _, err := s.deps.Containers.Update(ctx, rec, "spec"); err != nil {
		return fmt.Errorf("update container %q: %w", id, err)
	}
	if c.getStatus().State == stateRunning {
		t, err := s.deps.Tasks.Get(ctx, id)
		if err == nil {
			rb, err := json.Marshal(spec.Linux.Resources)
			if err != nil {
				return err
			}
			_, err = t.Client().Update(t.ShimContext(ctx), &taskapi.UpdateTaskRequest{ID: id, Resources: &anypb.Any{TypeUrl: resourcesTypeURL, Value: rb}})
			if err != nil {
				return fmt.Errorf("update container %q: %w", id, manager.ShimError(err))
			}
		}
	}
	raw, err := protojson.Marshal(res)
	if err != nil {
		return err
	}
	return s.setContainerStatus(c, func(st *containerStatus) { st.Resources = raw })
}

// reopenTimeout bounds the wait for a logging binary to reopen its file.
const reopenTimeout = 5 * time.Second

func (r *runtimeService) ReopenContainerLog(ctx context.Context, req *runtime.ReopenContainerLogRequest) (*runtime.ReopenContainerLogResponse, error) {
	c, err := r.s.getContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if err := r.s.reopenLog(c); err != nil {
		return nil, err
	}
	return &runtime.ReopenContainerLogResponse{}, nil
}

// reopenLog makes a running container's log writer reopen its path,
// after the kubelet moved the file away: berthd's own copier directly,
// a logging binary by SIGHUP, waiting until the new file exists.
func (s *Service) reopenLog(c *container) error {
	id := c.meta.ID
	if c.getStatus().State != stateRunning {
		return fmt.Errorf("reopen the log of container %q: it is not running: %w", id, errdefs.ErrFailedPrecondition)
	}
	if c.meta.LogPath == "" {
		return nil
	}
	c.smu.Lock()
	fc := c.copier
	c.smu.Unlock()
	if fc != nil {
		return fc.w.reopen()
	}
	b, err := os.ReadFile(s.loggerPidFile(id))
	if err != nil {
		return fmt.Errorf("reopen the log of container %q: its logger: %w", id, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return fmt.Errorf("reopen the log of container %q: logger pid %q: %w", id, b, errdefs.ErrInvalidArgument)
	}
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || !strings.Contains(string(cmdline), LoggerFlag) {
		return fmt.Errorf("reopen the log of container %q: its logger (pid %d) is gone: %w", id, pid, errdefs.ErrNotFound)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("reopen the log of container %q: signal its logger: %w", id, err)
	}
	deadline := time.Now().Add(reopenTimeout)
	for {
		if _, err := os.Stat(c.meta.LogPath); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("reopen the log of container %q: %s not created within %s: %w", id, c.meta.LogPath, reopenTimeout, errdefs.ErrUnavailable)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
