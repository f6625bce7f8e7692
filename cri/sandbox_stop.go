package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/network"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// sandboxKillTimeout bounds the wait for a killed pause process.
const sandboxKillTimeout = 30 * time.Second

func waitRequest(id string) *taskapi.WaitRequest { return &taskapi.WaitRequest{ID: id} }

// sandboxExited records the end of the pause process: the pod is not
// ready any more. Its task is deleted; the network stays until
// StopPodSandbox, which the kubelet calls next.
func (s *Service) sandboxExited(ctx context.Context, sb *sandbox, e exit) {
	sb.smu.Lock()
	select {
	case <-sb.exited:
		sb.smu.Unlock()
		return
	default:
	}
	sb.status.Ready, sb.status.ExitedAt = false, e.at.UnixNano()
	err := writeJSON(s.sandboxStatusPath(sb.meta.ID), sb.status)
	close(sb.exited)
	sb.smu.Unlock()
	if err != nil {
		log.G(ctx).Warn("CRI: record pod sandbox exit", "id", sb.meta.ID, "error", err)
	}
	s.deleteTask(context.WithoutCancel(ctx), sb.meta.ID)
	log.G(ctx).Info("CRI: pod sandbox exited", "id", sb.meta.ID, "status", e.code)
	s.sandboxEvent(ctx, sb, runtime.ContainerEventType_CONTAINER_STOPPED_EVENT)
}

func (r *runtimeService) StopPodSandbox(ctx context.Context, req *runtime.StopPodSandboxRequest) (*runtime.StopPodSandboxResponse, error) {
	ctx = withNamespace(ctx)
	sb, err := r.s.getSandbox(req.GetPodSandboxId())
	if errdefs.IsNotFound(err) {
		return &runtime.StopPodSandboxResponse{}, nil // stopped already, as far as anyone can tell
	} else if err != nil {
		return nil, err
	}
	if err := r.s.stopPodSandbox(ctx, sb); err != nil {
		return nil, err
	}
	return &runtime.StopPodSandboxResponse{}, nil
}

// stopPodSandbox stops the pod's containers (SIGKILL, as the kubelet
// stopped them gracefully before), then the pause process, unmounts the
// pod's /dev/shm and tears the network down. Each step is done once:
// stopping a stopped pod does nothing.
func (s *Service) stopPodSandbox(ctx context.Context, sb *sandbox) error {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	for _, c := range s.containersOf(sb.meta.ID) {
		if err := s.stopContainer(ctx, c, 0); err != nil {
			return fmt.Errorf("stop pod %q: %w", sb.meta.Name, err)
		}
	}
	if err := s.stopPause(ctx, sb); err != nil {
		return err
	}
	s.removeSandboxState(ctx, sb.meta.ID)
	return s.teardownSandboxNetwork(ctx, sb)
}

// stopPause kills the pause process and waits until its exit is recorded.
func (s *Service) stopPause(ctx context.Context, sb *sandbox) error {
	select {
	case <-sb.exited:
		return nil
	default:
	}
	if err := s.killTask(ctx, sb.meta.ID, syscall.SIGKILL, true); err != nil {
		return fmt.Errorf("stop pod %q: %w", sb.meta.Name, err)
	}
	if _, err := s.deps.Tasks.Get(ctx, sb.meta.ID); errdefs.IsNotFound(err) {
		// No task: gone while berthd was away, or never started.
		s.sandboxExited(ctx, sb, exit{code: unknownExitCode, at: time.Now(), lost: true})
		return nil
	}
	select {
	case <-sb.exited:
		return nil
	case <-time.After(sandboxKillTimeout):
		return fmt.Errorf("stop pod %q: its pause process did not exit within %s of SIGKILL: %w", sb.meta.Name, sandboxKillTimeout, errdefs.ErrUnavailable)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// teardownSandboxNetwork runs CNI DEL once and removes the network
// namespace; the record of what ADD did goes with it.
func (s *Service) teardownSandboxNetwork(ctx context.Context, sb *sandbox) error {
	st := sb.getStatus()
	if st.Network != nil {
		if err := s.net.Teardown(ctx, s.podAttachment(sb), st.Network.Network); err != nil {
			return fmt.Errorf("stop pod %q: %w", sb.meta.Name, err)
		}
		if err := s.setSandboxStatus(sb, func(st *sandboxStatus) { st.Network = nil }); err != nil {
			return err
		}
	}
	if sb.meta.NetNS != "" {
		if err := network.RemoveNetNS(sb.meta.NetNS); err != nil {
			return fmt.Errorf("stop pod %q: %w", sb.meta.Name, err)
		}
	}
	return nil
}

func (r *runtimeService) RemovePodSandbox(ctx context.Context, req *runtime.RemovePodSandboxRequest) (*runtime.RemovePodSandboxResponse, error) {
	ctx = withNamespace(ctx)
	sb, err := r.s.getSandbox(req.GetPodSandboxId())
	if errdefs.IsNotFound(err) {
		return &runtime.RemovePodSandboxResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	if err := r.s.removePodSandbox(ctx, sb); err != nil {
		return nil, err
	}
	return &runtime.RemovePodSandboxResponse{}, nil
}

// removePodSandbox stops the pod if it runs, removes its containers, then
// everything of the pod itself.
func (s *Service) removePodSandbox(ctx context.Context, sb *sandbox) error {
	if err := s.stopPodSandbox(ctx, sb); err != nil {
		return err
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	for _, c := range s.containersOf(sb.meta.ID) {
		if err := s.removeContainer(ctx, c); err != nil {
			return fmt.Errorf("remove pod %q: %w", sb.meta.Name, err)
		}
	}
	id := sb.meta.ID
	if err := s.deps.Containers.Delete(ctx, id); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove pod %q: %w", sb.meta.Name, err)
	}
	if err := s.deps.Snapshotter.Remove(ctx, id); err != nil && !errdefs.IsNotFound(err) {
		log.G(ctx).Warn("CRI: remove pod snapshot", "id", id, "error", err)
	}
	if err := os.RemoveAll(s.sandboxRoot(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.G(ctx).Warn("CRI: remove pod files", "id", id, "error", err)
	}
	s.sandboxes.remove(id)
	s.sandboxes.release(sb.meta.Name)
	s.sandboxEvent(ctx, sb, runtime.ContainerEventType_CONTAINER_DELETED_EVENT)
	log.G(ctx).Info("CRI: pod sandbox removed", "id", id, "name", sb.meta.Name)
	return nil
}
