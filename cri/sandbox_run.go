package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth/containers"
	"github.com/berth-dev/berth/cri/imagestore"
	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/network"
	"github.com/berth-dev/berth/runtime/handler"
	"github.com/berth-dev/berth/snapshots"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// undo is a stack of clean-ups run, newest first, when a call fails
// halfway.
type undo []func(context.Context)

func (u *undo) add(fn func(context.Context)) { *u = append(*u, fn) }

func (u undo) run(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	for _, fn := range slices.Backward(u) {
		fn(ctx)
	}
}

func (r *runtimeService) RunPodSandbox(ctx context.Context, req *runtime.RunPodSandboxRequest) (*runtime.RunPodSandboxResponse, error) {
	id, err := r.s.runPodSandbox(withNamespace(ctx), req.GetConfig(), req.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	return &runtime.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// runPodSandbox makes a pod: name reservation, runtime handler, sandbox
// image, network namespace and CNI, the pod's files, snapshot, spec,
// record, and the pause task. On failure, what was done is undone.
func (s *Service) runPodSandbox(ctx context.Context, cfg *runtime.PodSandboxConfig, handlerName string) (_ string, retErr error) {
	if err := validateSandboxConfig(cfg); err != nil {
		return "", err
	}
	if s.deps.Tasks == nil {
		return "", fmt.Errorf("run pod %q: berthd's task runtime (io.containerd.runtime.v2.task) failed to start; see `ctr plugins ls` and berthd's log: %w",
			cfg.GetMetadata().GetName(), errdefs.ErrUnavailable)
	}
	h, err := s.handlers.Get(handlerName)
	if err != nil {
		return "", fmt.Errorf("run pod %q: %w", cfg.GetMetadata().GetName(), err)
	}
	sb := &sandbox{config: cfg, exited: make(chan struct{})}
	sb.meta = sandboxMeta{ID: newID(), Name: sandboxName(cfg.GetMetadata()), RuntimeHandler: handlerName, Handler: h.Name, RuntimeType: h.RuntimeType}
	if sb.meta.Config, err = marshalConfig(cfg); err != nil {
		return "", err
	}
	id := sb.meta.ID
	if err := s.sandboxes.reserve(sb.meta.Name, id); err != nil {
		return "", err
	}
	var u undo
	defer func() {
		if retErr != nil {
			u.run(ctx)
		}
	}()
	u.add(func(context.Context) { s.sandboxes.release(sb.meta.Name) })

	img, err := s.sandboxImage(ctx)
	if err != nil {
		return "", err
	}
	sb.meta.Image, sb.meta.ImageID = s.cfg.SandboxImage, img.ID.String()
	u.add(func(context.Context) { _ = os.RemoveAll(s.sandboxRoot(id)) })
	if err := s.setupSandboxNetwork(ctx, sb, &u); err != nil {
		return "", err
	}
	if err := s.writeSandboxFiles(ctx, sb, &u); err != nil {
		return "", err
	}
	mounts, err := s.prepareSnapshot(ctx, id, img, &u)
	if err != nil {
		return "", err
	}
	spec, err := s.sandboxSpec(ctx, sb, img, h)
	if err != nil {
		return "", err
	}
	sb.meta.CreatedAt = time.Now().UnixNano()
	if err := s.createRecord(ctx, id, kindSandbox, "", img, h, spec, sandboxMetaType, sb.meta); err != nil {
		return "", err
	}
	u.add(func(ctx context.Context) { _ = s.deps.Containers.Delete(ctx, id) })
	if err := s.setSandboxStatus(sb, func(*sandboxStatus) {}); err != nil {
		return "", err
	}
	t, err := s.startTask(ctx, id, taskOptions{handler: h.Name, spec: spec, rootfs: mounts})
	if err != nil {
		return "", fmt.Errorf("run pod %q (runtime handler %q): %w", cfg.GetMetadata().GetName(), h.Name, err)
	}
	if err := s.setSandboxStatus(sb, func(st *sandboxStatus) { st.Ready, st.Pid = true, t.Pid }); err != nil {
		s.deleteTaskNow(ctx, id)
		return "", err
	}
	s.sandboxes.add(id, sb)
	s.waitTask(ctx, t, func(e exit) { s.sandboxExited(ctx, sb, e) })
	s.sandboxEvent(ctx, sb, runtime.ContainerEventType_CONTAINER_STARTED_EVENT)
	log.G(ctx).Info("CRI: pod sandbox running", "id", id, "name", sb.meta.Name, "handler", h.Name, "ips", sb.status.IPs)
	return id, nil
}

// deleteTaskNow kills and deletes a task that just started, for a
// failure right after its start.
func (s *Service) deleteTaskNow(ctx context.Context, id string) {
	ctx = context.WithoutCancel(ctx)
	_ = s.killTask(ctx, id, 9, true)
	if t, err := s.deps.Tasks.Get(ctx, id); err == nil {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, _ = t.Client().Wait(t.ShimContext(wctx), waitRequest(id))
		cancel()
	}
	s.deleteTask(ctx, id)
}

// sandboxImage returns the configured sandbox image, pulling it through
// the CRI's pull (hosts.toml, node credentials) when it is not there.
func (s *Service) sandboxImage(ctx context.Context) (imagestore.Image, error) {
	ref := s.cfg.SandboxImage
	img, err := s.images.Get(ctx, ref)
	if err == nil || !errdefs.IsNotFound(err) {
		return img, err
	}
	r, err := s.registry.resolver(nil)
	if err != nil {
		return imagestore.Image{}, err
	}
	defer s.fsUsage.invalidate()
	img, err = s.images.Pull(ctx, s.deps.Puller, r, ref, imagestore.PullOptions{
		Snapshotter: s.cfg.Snapshotter, Concurrency: s.cfg.MaxConcurrentDownloads, Pinned: true,
	})
	if err != nil {
		return imagestore.Image{}, fmt.Errorf("sandbox image %q (sandbox_image) is not in namespace %q and could not be pulled: %w", ref, Namespace, err)
	}
	return img, nil
}

// setupSandboxNetwork creates the pod's network namespace and attaches
// it to the CNI network; a pod on the host's network has neither.
func (s *Service) setupSandboxNetwork(ctx context.Context, sb *sandbox, u *undo) error {
	if sb.hostNetwork() {
		return nil
	}
	id := sb.meta.ID
	path := s.netnsPath(id)
	if err := network.NewNetNS(path); err != nil {
		return fmt.Errorf("pod %q: %w", sb.meta.Name, err)
	}
	u.add(func(context.Context) { _ = network.RemoveNetNS(path) })
	sb.meta.NetNS = path
	att := s.podAttachment(sb)
	res, err := s.net.Setup(ctx, att)
	if err != nil {
		return fmt.Errorf("pod %q: %w", sb.meta.Name, err)
	}
	u.add(func(ctx context.Context) {
		if err := s.net.Teardown(ctx, att, res.Network); err != nil {
			log.G(ctx).Warn("CRI: roll back pod network", "id", id, "error", err)
		}
	})
	sb.status.Network, sb.status.IPs = res, res.IPs
	return nil
}

// podAttachment is the CNI view of a pod: its ID, namespace, the
// arguments the kubelet's CNI plugins read, and its host ports.
func (s *Service) podAttachment(sb *sandbox) network.PodAttachment {
	m := sb.config.GetMetadata()
	att := network.PodAttachment{
		ID:    sb.meta.ID,
		NetNS: sb.meta.NetNS,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", m.GetNamespace()},
			{"K8S_POD_NAME", m.GetName()},
			{"K8S_POD_INFRA_CONTAINER_ID", sb.meta.ID},
			{"K8S_POD_UID", m.GetUid()},
		},
	}
	for _, p := range sb.config.GetPortMappings() {
		if p.GetHostPort() <= 0 {
			continue // only a host port needs the portmap plugin
		}
		att.Ports = append(att.Ports, network.PortMapping{
			HostPort: p.GetHostPort(), ContainerPort: p.GetContainerPort(),
			Protocol: strings.ToLower(p.GetProtocol().String()), HostIP: p.GetHostIp(),
		})
	}
	return att
}

// prepareSnapshot makes the writable snapshot key over the image's layers.
func (s *Service) prepareSnapshot(ctx context.Context, key string, img imagestore.Image, u *undo) ([]mount.Mount, error) {
	mounts, err := s.deps.Snapshotter.Prepare(ctx, key, img.ChainID.String(),
		snapshots.WithLabels(map[string]string{"containerd.io/snapshot.ref": key}))
	if err != nil {
		return nil, fmt.Errorf("prepare snapshot %q of image %s: %w", key, img.ID, err)
	}
	u.add(func(ctx context.Context) {
		if err := s.deps.Snapshotter.Remove(ctx, key); err != nil && !errdefs.IsNotFound(err) {
			log.G(ctx).Warn("CRI: remove snapshot", "key", key, "error", err)
		}
	})
	return mounts, nil
}

// createRecord writes the container record of a sandbox or container:
// spec, runtime, snapshot, the kind label and the CRI's metadata.
func (s *Service) createRecord(ctx context.Context, id, kind, sandboxID string, img imagestore.Image, h *handler.Handler, spec any, metaType string, meta any) error {
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	metaJSON, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	opts, err := h.OptionsAny()
	if err != nil {
		return err
	}
	rec := containers.Container{
		ID:          id,
		Labels:      map[string]string{labelKind: kind},
		Image:       imageName(img),
		Runtime:     containers.RuntimeInfo{Name: h.RuntimeType},
		Spec:        &anypb.Any{TypeUrl: containers.SpecTypeURL, Value: specJSON},
		SnapshotKey: id,
		Snapshotter: s.cfg.Snapshotter,
		SandboxID:   sandboxID,
		Extensions:  map[string]typeurl.Any{extensionName: &anypb.Any{TypeUrl: metaType, Value: metaJSON}},
	}
	if opts != nil {
		rec.Runtime.Options = opts
	}
	if _, err := s.deps.Containers.Create(ctx, rec); err != nil {
		return fmt.Errorf("record %s %q: %w", kind, id, err)
	}
	return nil
}

// imageName is the name the record gives its image: the first tag, else
// the first digest, else the ID.
func imageName(img imagestore.Image) string {
	if tags := img.RepoTags(); len(tags) > 0 {
		return tags[0]
	}
	if digests := img.RepoDigests(); len(digests) > 0 {
		return digests[0]
	}
	return img.ID.String()
}
