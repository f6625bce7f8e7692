package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The RuntimeService methods not implemented yet: streamed metrics,
// checkpoints and pod-level resource updates. Each answers Unimplemented
// naming itself.

func notImplemented(method string) error {
	return fmt.Errorf("CRI %s is not implemented yet in berth: %w", method, errdefs.ErrNotImplemented)
}

func (r *runtimeService) CheckpointContainer(context.Context, *runtime.CheckpointContainerRequest) (*runtime.CheckpointContainerResponse, error) {
	return nil, notImplemented("CheckpointContainer")
}

func (r *runtimeService) CheckpointPod(context.Context, *runtime.CheckpointPodRequest) (*runtime.CheckpointPodResponse, error) {
	return nil, notImplemented("CheckpointPod")
}

func (r *runtimeService) RestorePod(context.Context, *runtime.RestorePodRequest) (*runtime.RestorePodResponse, error) {
	return nil, notImplemented("RestorePod")
}

func (r *runtimeService) StreamPodSandboxMetrics(*runtime.StreamPodSandboxMetricsRequest, grpc.ServerStreamingServer[runtime.StreamPodSandboxMetricsResponse]) error {
	return notImplemented("StreamPodSandboxMetrics")
}

func (r *runtimeService) UpdatePodSandboxResources(context.Context, *runtime.UpdatePodSandboxResourcesRequest) (*runtime.UpdatePodSandboxResourcesResponse, error) {
	return nil, notImplemented("UpdatePodSandboxResources")
}
