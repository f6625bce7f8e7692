package cri

import (
	"context"
	"encoding/json"

	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (r *runtimeService) PodSandboxStatus(ctx context.Context, req *runtime.PodSandboxStatusRequest) (*runtime.PodSandboxStatusResponse, error) {
	ctx = withNamespace(ctx)
	sb, err := r.s.getSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	resp := &runtime.PodSandboxStatusResponse{Status: r.s.criSandboxStatus(ctx, sb)}
	if req.GetVerbose() {
		resp.Info = map[string]string{"info": mustJSON(r.s.sandboxInfo(ctx, sb))}
	}
	for _, c := range r.s.containersOf(sb.meta.ID) {
		resp.ContainersStatuses = append(resp.ContainersStatuses, r.s.criContainerStatus(c))
	}
	resp.Timestamp = nowNanos()
	return resp, nil
}

// criSandboxStatus is the CRI's status of a pod.
func (s *Service) criSandboxStatus(_ context.Context, sb *sandbox) *runtime.PodSandboxStatus {
	st := sb.getStatus()
	state := runtime.PodSandboxState_SANDBOX_NOTREADY
	if st.Ready {
		state = runtime.PodSandboxState_SANDBOX_READY
	}
	out := &runtime.PodSandboxStatus{
		Id:             sb.meta.ID,
		Metadata:       sb.config.GetMetadata(),
		State:          state,
		CreatedAt:      sb.meta.CreatedAt,
		Labels:         sb.config.GetLabels(),
		Annotations:    sb.config.GetAnnotations(),
		RuntimeHandler: sb.meta.RuntimeHandler,
		Linux: &runtime.LinuxPodSandboxStatus{Namespaces: &runtime.Namespace{
			Options: sb.namespaceOptions(),
		}},
		Network: &runtime.PodSandboxNetworkStatus{},
	}
	if len(st.IPs) > 0 {
		out.Network.Ip = st.IPs[0]
		for _, ip := range st.IPs[1:] {
			out.Network.AdditionalIps = append(out.Network.AdditionalIps, &runtime.PodIP{Ip: ip})
		}
	}
	return out
}

// namespaceOptions are the pod's namespace modes, with the CRI's default
// (POD) for those it does not set.
func (sb *sandbox) namespaceOptions() *runtime.NamespaceOption {
	o := sb.config.GetLinux().GetSecurityContext().GetNamespaceOptions()
	return &runtime.NamespaceOption{Network: o.GetNetwork(), Pid: o.GetPid(), Ipc: o.GetIpc(), TargetId: o.GetTargetId()}
}

// sandboxInfo is the verbose status, with containerd's JSON names, so
// that `crictl inspectp POD | jq .info.runtimeType` works as on
// containerd.
type sandboxInfoJSON struct {
	Pid            uint32          `json:"pid"`
	ProcessStatus  string          `json:"processStatus"`
	NetNSClosed    bool            `json:"netNamespaceClosed"`
	NetNS          string          `json:"netns,omitempty"`
	Image          string          `json:"image"`
	SnapshotKey    string          `json:"snapshotKey"`
	Snapshotter    string          `json:"snapshotter"`
	RuntimeHandler string          `json:"runtimeHandler"`
	RuntimeType    string          `json:"runtimeType"`
	RuntimeOptions any             `json:"runtimeOptions,omitempty"`
	Config         json.RawMessage `json:"config"`
	RuntimeSpec    json.RawMessage `json:"runtimeSpec,omitempty"`
	CNIResult      json.RawMessage `json:"cniResult,omitempty"`
}

func (s *Service) sandboxInfo(ctx context.Context, sb *sandbox) sandboxInfoJSON {
	st := sb.getStatus()
	info := sandboxInfoJSON{
		Pid:            st.Pid,
		ProcessStatus:  "stopped",
		NetNSClosed:    sb.meta.NetNS != "" && st.Network == nil,
		NetNS:          sb.meta.NetNS,
		Image:          sb.meta.Image,
		SnapshotKey:    sb.meta.ID,
		Snapshotter:    s.cfg.Snapshotter,
		RuntimeHandler: sb.meta.Handler,
		RuntimeType:    sb.meta.RuntimeType,
		Config:         sb.meta.Config,
	}
	if st.Ready {
		info.ProcessStatus = "running"
	}
	if h, err := s.handlers.Get(sb.meta.Handler); err == nil {
		info.RuntimeOptions = h.Options
	}
	if st.Network != nil {
		info.CNIResult = st.Network.Result
	}
	if rec, err := s.deps.Containers.Get(ctx, sb.meta.ID); err == nil && rec.Spec != nil {
		info.RuntimeSpec = rec.Spec.GetValue()
	}
	return info
}

func (r *runtimeService) ListPodSandbox(ctx context.Context, req *runtime.ListPodSandboxRequest) (*runtime.ListPodSandboxResponse, error) {
	return &runtime.ListPodSandboxResponse{Items: r.s.listSandboxes(withNamespace(ctx), req.GetFilter())}, nil
}

func (r *runtimeService) StreamPodSandboxes(req *runtime.StreamPodSandboxesRequest, stream grpc.ServerStreamingServer[runtime.StreamPodSandboxesResponse]) error {
	items := r.s.listSandboxes(withNamespace(stream.Context()), req.GetFilter())
	for len(items) > 0 {
		n := min(len(items), streamImagesBatch)
		if err := stream.Send(&runtime.StreamPodSandboxesResponse{PodSandboxes: items[:n]}); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

// listSandboxes lists the pods matching filter: by ID (or ID prefix),
// state and labels (each given label must match).
func (s *Service) listSandboxes(ctx context.Context, f *runtime.PodSandboxFilter) []*runtime.PodSandbox {
	var out []*runtime.PodSandbox
	cands := s.sandboxes.list()
	if id := f.GetId(); id != "" {
		sb, err := s.getSandbox(id)
		if err != nil {
			return nil
		}
		cands = []*sandbox{sb}
	}
	for _, sb := range cands {
		st := s.criSandboxStatus(ctx, sb)
		if f.GetState() != nil && f.GetState().GetState() != st.State {
			continue
		}
		if !labelsMatch(sb.config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		out = append(out, &runtime.PodSandbox{
			Id: sb.meta.ID, Metadata: st.Metadata, State: st.State, CreatedAt: st.CreatedAt,
			Labels: st.Labels, Annotations: st.Annotations, RuntimeHandler: st.RuntimeHandler,
		})
	}
	return out
}

// labelsMatch reports whether labels hold every key and value of sel.
func labelsMatch(labels, sel map[string]string) bool {
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
