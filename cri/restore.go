package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/berth-dev/berth/containers"
	"github.com/berth-dev/berth/log"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/encoding/protojson"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// restore rebuilds the CRI's view after a berthd restart: every sandbox
// and container record of namespace k8s.io with its status file, checked
// against the tasks the shim manager reconnected to. A task that still
// runs is followed again (its exit, possibly while berthd was down and
// kept by the shim, is recorded as usual); one that is gone is recorded
// as exited with an unknown status. Sandboxes first, so that containers
// find their pod.
func (s *Service) restore(ctx context.Context) {
	recs, err := s.deps.Containers.List(ctx, fmt.Sprintf("labels.%q", labelKind))
	if err != nil {
		log.G(ctx).Error("CRI: cannot list the records to restore", "error", err)
		return
	}
	var sandboxes, ctrs int
	for _, kind := range []string{kindSandbox, kindContainer} {
		for _, rec := range recs {
			if rec.Labels[labelKind] != kind {
				continue
			}
			var err error
			if kind == kindSandbox {
				err = s.restoreSandbox(ctx, rec)
				sandboxes++
			} else {
				err = s.restoreContainer(ctx, rec)
				ctrs++
			}
			if err != nil {
				log.G(ctx).Warn("CRI: record not restored", "kind", kind, "id", rec.ID, "error", err)
			}
		}
	}
	if sandboxes+ctrs > 0 {
		log.G(ctx).Info("CRI: restored", "sandboxes", sandboxes, "containers", ctrs)
	}
}

func extension(rec containers.Container, v any) error {
	ext, ok := rec.Extensions[extensionName]
	if !ok || ext == nil {
		return fmt.Errorf("no %s extension: %w", extensionName, errdefs.ErrNotFound)
	}
	return json.Unmarshal(ext.GetValue(), v)
}

func (s *Service) restoreSandbox(ctx context.Context, rec containers.Container) error {
	sb := &sandbox{exited: make(chan struct{}), config: &runtime.PodSandboxConfig{}}
	if err := extension(rec, &sb.meta); err != nil {
		return err
	}
	if err := protojson.Unmarshal(sb.meta.Config, sb.config); err != nil {
		return fmt.Errorf("decode its config: %w", err)
	}
	if err := readJSON(s.sandboxStatusPath(sb.meta.ID), &sb.status); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	if err := s.sandboxes.reserve(sb.meta.Name, sb.meta.ID); err != nil {
		return err
	}
	s.sandboxes.add(sb.meta.ID, sb)
	t, err := s.deps.Tasks.Get(ctx, sb.meta.ID)
	if err != nil || !sb.status.Ready {
		if sb.status.Ready {
			s.sandboxExited(ctx, sb, exit{code: unknownExitCode, at: time.Now(), lost: true})
		} else {
			close(sb.exited)
			if err == nil {
				// Started, but berthd died before recording it: it was
				// never reported, so it goes.
				s.deleteTaskNow(ctx, sb.meta.ID)
			}
		}
		return nil
	}
	s.waitTask(ctx, t, func(e exit) { s.sandboxExited(ctx, sb, e) })
	return nil
}

func (s *Service) restoreContainer(ctx context.Context, rec containers.Container) error {
	c := &container{exited: make(chan struct{}), config: &runtime.ContainerConfig{}}
	if err := extension(rec, &c.meta); err != nil {
		return err
	}
	if err := protojson.Unmarshal(c.meta.Config, c.config); err != nil {
		return fmt.Errorf("decode its config: %w", err)
	}
	if err := readJSON(s.containerStatusPath(c.meta.ID), &c.status); err != nil {
		if !errdefs.IsNotFound(err) {
			return err
		}
		c.status.State = stateCreated
	}
	if err := s.containers.reserve(c.meta.Name, c.meta.ID); err != nil {
		return err
	}
	s.containers.add(c.meta.ID, c)
	switch c.status.State {
	case stateCreated:
		return nil
	case stateRunning:
		t, err := s.deps.Tasks.Get(ctx, c.meta.ID)
		if err != nil {
			s.containerExited(ctx, c, exit{code: unknownExitCode, at: time.Now(), lost: true})
			return nil
		}
		if c.config.GetTty() || c.config.GetStdin() || s.deps.LoggerBinary == "" {
			s.reattachCopier(ctx, c)
		}
		s.waitTask(ctx, t, func(e exit) { s.containerExited(ctx, c, e) })
	default:
		close(c.exited)
	}
	return nil
}

// reattachCopier copies the output of a container whose output berthd
// copies itself again, from the FIFOs the shim still writes.
func (s *Service) reattachCopier(ctx context.Context, c *container) {
	if c.meta.LogPath == "" && !c.config.GetTty() && !c.config.GetStdin() {
		return
	}
	// Not stdin: the shim saw its FIFO's writer, the previous berthd, go
	// and closed the container's stdin.
	fc, err := s.newFifoCopier(ctx, c, c.config.GetTty(), false)
	if err != nil {
		log.G(ctx).Warn("CRI: container output not reattached", "id", c.meta.ID, "error", err)
		return
	}
	c.setCopier(fc)
	fc.start()
}
