package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The RuntimeService methods of pod sandboxes, containers, streaming,
// stats, checkpoints and events are not implemented yet; the sandbox and
// container part replaces this file. Each answers Unimplemented naming
// itself.

func notImplemented(method string) error {
	return fmt.Errorf("CRI %s is not implemented yet in berth: %w", method, errdefs.ErrNotImplemented)
}

func (r *runtimeService) RunPodSandbox(context.Context, *runtime.RunPodSandboxRequest) (*runtime.RunPodSandboxResponse, error) {
	return nil, notImplemented("RunPodSandbox")
}

func (r *runtimeService) StopPodSandbox(context.Context, *runtime.StopPodSandboxRequest) (*runtime.StopPodSandboxResponse, error) {
	return nil, notImplemented("StopPodSandbox")
}

func (r *runtimeService) RemovePodSandbox(context.Context, *runtime.RemovePodSandboxRequest) (*runtime.RemovePodSandboxResponse, error) {
	return nil, notImplemented("RemovePodSandbox")
}

func (r *runtimeService) PodSandboxStatus(context.Context, *runtime.PodSandboxStatusRequest) (*runtime.PodSandboxStatusResponse, error) {
	return nil, notImplemented("PodSandboxStatus")
}

func (r *runtimeService) ListPodSandbox(context.Context, *runtime.ListPodSandboxRequest) (*runtime.ListPodSandboxResponse, error) {
	return nil, notImplemented("ListPodSandbox")
}

func (r *runtimeService) StreamPodSandboxes(*runtime.StreamPodSandboxesRequest, grpc.ServerStreamingServer[runtime.StreamPodSandboxesResponse]) error {
	return notImplemented("StreamPodSandboxes")
}

func (r *runtimeService) CreateContainer(context.Context, *runtime.CreateContainerRequest) (*runtime.CreateContainerResponse, error) {
	return nil, notImplemented("CreateContainer")
}

func (r *runtimeService) StartContainer(context.Context, *runtime.StartContainerRequest) (*runtime.StartContainerResponse, error) {
	return nil, notImplemented("StartContainer")
}

func (r *runtimeService) StopContainer(context.Context, *runtime.StopContainerRequest) (*runtime.StopContainerResponse, error) {
	return nil, notImplemented("StopContainer")
}

func (r *runtimeService) RemoveContainer(context.Context, *runtime.RemoveContainerRequest) (*runtime.RemoveContainerResponse, error) {
	return nil, notImplemented("RemoveContainer")
}

func (r *runtimeService) ListContainers(context.Context, *runtime.ListContainersRequest) (*runtime.ListContainersResponse, error) {
	return nil, notImplemented("ListContainers")
}

func (r *runtimeService) StreamContainers(*runtime.StreamContainersRequest, grpc.ServerStreamingServer[runtime.StreamContainersResponse]) error {
	return notImplemented("StreamContainers")
}

func (r *runtimeService) ContainerStatus(context.Context, *runtime.ContainerStatusRequest) (*runtime.ContainerStatusResponse, error) {
	return nil, notImplemented("ContainerStatus")
}

func (r *runtimeService) UpdateContainerResources(context.Context, *runtime.UpdateContainerResourcesRequest) (*runtime.UpdateContainerResourcesResponse, error) {
	return nil, notImplemented("UpdateContainerResources")
}

func (r *runtimeService) ReopenContainerLog(context.Context, *runtime.ReopenContainerLogRequest) (*runtime.ReopenContainerLogResponse, error) {
	return nil, notImplemented("ReopenContainerLog")
}

func (r *runtimeService) ExecSync(context.Context, *runtime.ExecSyncRequest) (*runtime.ExecSyncResponse, error) {
	return nil, notImplemented("ExecSync")
}

func (r *runtimeService) Exec(context.Context, *runtime.ExecRequest) (*runtime.ExecResponse, error) {
	return nil, notImplemented("Exec")
}

func (r *runtimeService) Attach(context.Context, *runtime.AttachRequest) (*runtime.AttachResponse, error) {
	return nil, notImplemented("Attach")
}

func (r *runtimeService) PortForward(context.Context, *runtime.PortForwardRequest) (*runtime.PortForwardResponse, error) {
	return nil, notImplemented("PortForward")
}

func (r *runtimeService) ContainerStats(context.Context, *runtime.ContainerStatsRequest) (*runtime.ContainerStatsResponse, error) {
	return nil, notImplemented("ContainerStats")
}

func (r *runtimeService) ListContainerStats(context.Context, *runtime.ListContainerStatsRequest) (*runtime.ListContainerStatsResponse, error) {
	return nil, notImplemented("ListContainerStats")
}

func (r *runtimeService) StreamContainerStats(*runtime.StreamContainerStatsRequest, grpc.ServerStreamingServer[runtime.StreamContainerStatsResponse]) error {
	return notImplemented("StreamContainerStats")
}

func (r *runtimeService) PodSandboxStats(context.Context, *runtime.PodSandboxStatsRequest) (*runtime.PodSandboxStatsResponse, error) {
	return nil, notImplemented("PodSandboxStats")
}

func (r *runtimeService) ListPodSandboxStats(context.Context, *runtime.ListPodSandboxStatsRequest) (*runtime.ListPodSandboxStatsResponse, error) {
	return nil, notImplemented("ListPodSandboxStats")
}

func (r *runtimeService) StreamPodSandboxStats(*runtime.StreamPodSandboxStatsRequest, grpc.ServerStreamingServer[runtime.StreamPodSandboxStatsResponse]) error {
	return notImplemented("StreamPodSandboxStats")
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

func (r *runtimeService) GetContainerEvents(*runtime.GetEventsRequest, grpc.ServerStreamingServer[runtime.ContainerEventResponse]) error {
	return notImplemented("GetContainerEvents")
}

func (r *runtimeService) ListMetricDescriptors(context.Context, *runtime.ListMetricDescriptorsRequest) (*runtime.ListMetricDescriptorsResponse, error) {
	return nil, notImplemented("ListMetricDescriptors")
}

func (r *runtimeService) ListPodSandboxMetrics(context.Context, *runtime.ListPodSandboxMetricsRequest) (*runtime.ListPodSandboxMetricsResponse, error) {
	return nil, notImplemented("ListPodSandboxMetrics")
}

func (r *runtimeService) StreamPodSandboxMetrics(*runtime.StreamPodSandboxMetricsRequest, grpc.ServerStreamingServer[runtime.StreamPodSandboxMetricsResponse]) error {
	return notImplemented("StreamPodSandboxMetrics")
}

func (r *runtimeService) UpdatePodSandboxResources(context.Context, *runtime.UpdatePodSandboxResourcesRequest) (*runtime.UpdatePodSandboxResourcesResponse, error) {
	return nil, notImplemented("UpdatePodSandboxResources")
}
