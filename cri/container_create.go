package cri

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/cri/imagestore"
	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/oci"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (r *runtimeService) CreateContainer(ctx context.Context, req *runtime.CreateContainerRequest) (*runtime.CreateContainerResponse, error) {
	id, err := r.s.createContainer(withNamespace(ctx), req.GetPodSandboxId(), req.GetConfig())
	if err != nil {
		return nil, err
	}
	return &runtime.CreateContainerResponse{ContainerId: id}, nil
}

// createContainer records a container of pod sandboxID: name, snapshot
// over its image, user, spec, record and status. Nothing runs yet.
func (s *Service) createContainer(ctx context.Context, sandboxID string, cfg *runtime.ContainerConfig) (_ string, retErr error) {
	if err := validateContainerConfig(cfg); err != nil {
		return "", err
	}
	name := cfg.GetMetadata().GetName()
	cfg, err := s.resolveImageVolumes(ctx, cfg)
	if err != nil {
		return "", fmt.Errorf("create container %q: %w", name, err)
	}
	sb, err := s.getSandbox(sandboxID)
	if err != nil {
		return "", fmt.Errorf("create container %q: pod sandbox: %w", name, err)
	}
	if !sb.getStatus().Ready {
		return "", fmt.Errorf("create container %q: pod sandbox %q is not ready: %w", name, sb.meta.ID, errdefs.ErrFailedPrecondition)
	}
	img, err := s.images.Get(ctx, cfg.GetImage().GetImage())
	if err != nil {
		return "", fmt.Errorf("create container %q: %w", name, err)
	}
	h, err := s.handlers.Get(sb.meta.Handler)
	if err != nil {
		return "", fmt.Errorf("create container %q: %w", name, err)
	}
	c := &container{config: cfg, exited: make(chan struct{})}
	c.meta = containerMeta{
		ID: newID(), Name: containerName(cfg.GetMetadata(), sb), SandboxID: sb.meta.ID,
		ImageID: img.ID.String(), Handler: h.Name, RuntimeType: h.RuntimeType,
		StopSignal: img.Spec.Config.StopSignal,
	}
	if tags := img.RepoTags(); len(tags) > 0 {
		c.meta.ImageName = tags[0]
	}
	if digests := img.RepoDigests(); len(digests) > 0 {
		c.meta.RepoDigest = digests[0]
	}
	if sig := cfg.GetStopSignal(); sig != runtime.Signal_SIGNAL_RUNTIME_DEFAULT {
		c.meta.StopSignal = strings.TrimPrefix(sig.String(), "SIGNAL_")
	}
	if lp := cfg.GetLogPath(); lp != "" && sb.config.GetLogDirectory() != "" {
		c.meta.LogPath = filepath.Join(sb.config.GetLogDirectory(), lp)
	}
	if c.meta.Config, err = marshalConfig(cfg); err != nil {
		return "", err
	}
	id := c.meta.ID
	if err := s.containers.reserve(c.meta.Name, id); err != nil {
		return "", err
	}
	var u undo
	defer func() {
		if retErr != nil {
			u.run(ctx)
		}
	}()
	u.add(func(context.Context) { s.containers.release(c.meta.Name) })
	mounts, err := s.prepareSnapshot(ctx, id, img, &u)
	if err != nil {
		return "", err
	}
	if c.imageVolumes, err = s.mountImageVolumes(ctx, id, cfg, &u); err != nil {
		return "", fmt.Errorf("create container %q: %w", name, err)
	}
	user, err := containerUser(ctx, cfg, img, mounts)
	if err != nil {
		return "", fmt.Errorf("create container %q: %w", name, err)
	}
	c.meta.User = user
	spec, err := s.containerSpec(ctx, c, sb, img, user, h)
	if err != nil {
		return "", fmt.Errorf("create container %q: %w", name, err)
	}
	c.meta.CreatedAt = time.Now().UnixNano()
	if err := s.createRecord(ctx, id, kindContainer, sb.meta.ID, img, h, spec, containerMetaTyp, c.meta); err != nil {
		return "", err
	}
	u.add(func(ctx context.Context) { _ = s.deps.Containers.Delete(ctx, id) })
	u.add(func(context.Context) { _ = os.RemoveAll(s.containerRoot(id)) })
	if err := s.setContainerStatus(c, func(st *containerStatus) { st.State = stateCreated }); err != nil {
		return "", err
	}
	s.containers.add(id, c)
	s.containerEvent(ctx, c, runtime.ContainerEventType_CONTAINER_CREATED_EVENT)
	log.G(ctx).Info("CRI: container created", "id", id, "name", c.meta.Name, "pod", sb.meta.ID)
	return id, nil
}

// containerUser resolves who the container runs as: run_as_username or
// run_as_user (with run_as_group), else the image's user, against the
// image's /etc/passwd and /etc/group, read from the container's snapshot
// mounted read-only; then the supplemental groups, merged with the
// image's groups of the user or, with policy Strict, instead of them.
func containerUser(ctx context.Context, cfg *runtime.ContainerConfig, img imagestore.Image, mounts []mount.Mount) (specs.User, error) {
	sc := cfg.GetLinux().GetSecurityContext()
	user := img.Spec.Config.User
	switch {
	case sc.GetRunAsUsername() != "":
		user = sc.GetRunAsUsername()
	case sc.GetRunAsUser() != nil:
		user = strconv.FormatInt(sc.GetRunAsUser().GetValue(), 10)
	}
	if g := sc.GetRunAsGroup(); g != nil {
		if u, _, _ := cutUser(user); u != "" {
			user = u
		}
		user += ":" + strconv.FormatInt(g.GetValue(), 10)
	}
	ro := make([]mount.Mount, len(mounts))
	for i, m := range mounts {
		ro[i] = m
		ro[i].Options = append(slices.Clone(m.Options), "ro")
	}
	var out specs.User
	err := mount.WithTempMount(ctx, ro, func(root string) error {
		var err error
		out, err = oci.ResolveUser(root, user)
		return err
	})
	if err != nil {
		return specs.User{}, err
	}
	if sc.GetSupplementalGroupsPolicy() == runtime.SupplementalGroupsPolicy_Strict {
		out.AdditionalGids = []uint32{out.GID}
	}
	for _, g := range sc.GetSupplementalGroups() {
		if !slices.Contains(out.AdditionalGids, uint32(g)) {
			out.AdditionalGids = append(out.AdditionalGids, uint32(g))
		}
	}
	return out, nil
}

// cutUser splits "user:group".
func cutUser(s string) (user, group string, ok bool) {
	for i := range len(s) {
		if s[i] == ':' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
