package cri

import (
	"context"
	"strings"

	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/runtime/handler"
	"github.com/berth-dev/berth/version"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runtimeService is runtime.v1.RuntimeService. Its served methods are
// here; pods and containers are in runtime_pending.go.
type runtimeService struct {
	runtime.UnimplementedRuntimeServiceServer
	s *Service
}

// Names of the Version answer.
const (
	// kubeAPIVersion is the version of the kubelet's runtime API, which
	// containerd has always answered with this value.
	kubeAPIVersion = "0.1.0"
	runtimeName    = "berth"
	// runtimeAPIVersion is the CRI version served.
	runtimeAPIVersion = "v1"
)

func (r *runtimeService) Version(context.Context, *runtime.VersionRequest) (*runtime.VersionResponse, error) {
	return &runtime.VersionResponse{
		Version:           kubeAPIVersion,
		RuntimeName:       runtimeName,
		RuntimeVersion:    berthVersion(),
		RuntimeApiVersion: runtimeAPIVersion,
	}, nil
}

// berthVersion is berth's own version: the version package's reads as the
// containerd API level with berth's version as build metadata
// ("v1.7.0+berth.0.1.0"), and the CRI names berth itself.
func berthVersion() string {
	if _, own, ok := strings.Cut(version.Version, "+berth."); ok {
		return own
	}
	return version.Version
}

func (r *runtimeService) Status(ctx context.Context, req *runtime.StatusRequest) (*runtime.StatusResponse, error) {
	return r.s.status(ctx, req.GetVerbose()), nil
}

// RuntimeConfig tells the kubelet which cgroup driver to use: systemd
// when the default handler is runc with SystemdCgroup, cgroupfs otherwise.
func (r *runtimeService) RuntimeConfig(context.Context, *runtime.RuntimeConfigRequest) (*runtime.RuntimeConfigResponse, error) {
	driver := runtime.CgroupDriver_CGROUPFS
	if h := r.s.handlers.Default(); h != nil && h.RuntimeType == handler.RuncV2 && h.Options["SystemdCgroup"] == true {
		driver = runtime.CgroupDriver_SYSTEMD
	}
	return &runtime.RuntimeConfigResponse{Linux: &runtime.LinuxRuntimeConfiguration{CgroupDriver: driver}}, nil
}

// UpdateRuntimeConfig keeps the pod CIDR the kubelet gives, for the
// network part; everything else in the request is not for runtimes.
func (r *runtimeService) UpdateRuntimeConfig(ctx context.Context, req *runtime.UpdateRuntimeConfigRequest) (*runtime.UpdateRuntimeConfigResponse, error) {
	cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	if cidr == "" {
		return &runtime.UpdateRuntimeConfigResponse{}, nil
	}
	r.s.mu.Lock()
	changed := r.s.podCIDR != cidr
	r.s.podCIDR = cidr
	r.s.mu.Unlock()
	if changed {
		log.G(ctx).Info("CRI: pod CIDR set", "cidr", cidr)
	}
	return &runtime.UpdateRuntimeConfigResponse{}, nil
}
