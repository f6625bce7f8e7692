package cri

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A container of a pod, as the kubelet drives it:
//
//	CreateContainer ──► CREATED ── StartContainer ──► RUNNING ── exit, StopContainer ──► EXITED
//	any state ── RemoveContainer ──► (gone)
//
// CreateContainer writes the record (spec, snapshot) and nothing runs;
// StartContainer creates and starts the task, its output going to the
// CRI log file; the task is deleted as soon as it exited, leaving the
// recorded status. RemoveContainer kills a running container first.
// StopContainer and RemoveContainer succeed for a missing container.

// Container states as recorded.
const (
	stateCreated = "created"
	stateRunning = "running"
	stateExited  = "exited"
)

// Reasons of an exited container, the kubelet's.
const (
	reasonCompleted  = "Completed"
	reasonError      = "Error"
	reasonOOMKilled  = "OOMKilled"
	reasonStartError = "StartError"
	reasonUnknown    = "Unknown"
)

// containerMeta is what a container is made from, recorded in its
// container record's extension; it never changes.
type containerMeta struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	SandboxID string `json:"sandboxID"`
	// Config is the ContainerConfig, in protobuf's JSON.
	Config json.RawMessage `json:"config"`
	// ImageID is the image's config digest; ImageName its first tag (for
	// ContainerStatus.image) and RepoDigest its first repo digest (for
	// image_ref), "" when the image has none.
	ImageID    string `json:"imageID"`
	ImageName  string `json:"imageName,omitempty"`
	RepoDigest string `json:"repoDigest,omitempty"`
	// User is who the process runs as, resolved at creation.
	User specs.User `json:"user"`
	// LogPath is the log file, LogDirectory/LogPath; "" for none.
	LogPath    string `json:"logPath,omitempty"`
	StopSignal string `json:"stopSignal,omitempty"`
	Handler    string `json:"handler"`
	// RuntimeType is the handler's runtime type.
	RuntimeType string `json:"runtimeType"`
	CreatedAt   int64  `json:"createdAt"`
}

// containerStatus is what changes, in <root>/containers/<id>/status.json.
type containerStatus struct {
	State      string `json:"state"`
	Pid        uint32 `json:"pid,omitempty"`
	StartedAt  int64  `json:"startedAt,omitempty"`
	FinishedAt int64  `json:"finishedAt,omitempty"`
	ExitCode   int32  `json:"exitCode,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Message    string `json:"message,omitempty"`
	// Resources are the limits UpdateContainerResources last set, in
	// protobuf's JSON; nil for the config's.
	Resources json.RawMessage `json:"resources,omitempty"`
}

// container is one container in memory.
type container struct {
	meta   containerMeta
	config *runtime.ContainerConfig
	// imageVolumes are the bind mounts of its image volumes by container
	// path, set while CreateContainer builds its spec (image_volume.go).
	imageVolumes map[string]specs.Mount

	// mu serializes the lifecycle calls of the container.
	mu sync.Mutex

	smu    sync.Mutex // guards status, exited and oom
	status containerStatus
	// exited is closed once the container's task exited (or never ran).
	exited chan struct{}
	// oom is set by a /tasks/oom event of the running task.
	oom bool
	// copier copies the output in berthd, for a container without a
	// logging binary; nil otherwise.
	copier *fifoCopier
}

func (c *container) setCopier(fc *fifoCopier) {
	c.smu.Lock()
	c.copier = fc
	c.smu.Unlock()
}

func (c *container) getStatus() containerStatus {
	c.smu.Lock()
	defer c.smu.Unlock()
	return c.status
}

// containerName is containerd's unique name of a container.
func containerName(m *runtime.ContainerMetadata, sb *sandbox) string {
	pm := sb.config.GetMetadata()
	return strings.Join([]string{m.GetName(), pm.GetName(), pm.GetNamespace(), pm.GetUid(), fmt.Sprint(m.GetAttempt())}, "_")
}

// containerRoot holds a container's status; containerState its FIFOs
// and its logging binary's pid file.
func (s *Service) containerRoot(id string) string {
	return filepath.Join(s.deps.Root, "containers", id)
}
func (s *Service) containerState(id string) string {
	return filepath.Join(s.deps.State, "containers", id)
}

func (s *Service) containerStatusPath(id string) string {
	return filepath.Join(s.containerRoot(id), "status.json")
}

// setContainerStatus changes the container's status with fn and writes it.
func (s *Service) setContainerStatus(c *container, fn func(*containerStatus)) error {
	c.smu.Lock()
	defer c.smu.Unlock()
	fn(&c.status)
	return writeJSON(s.containerStatusPath(c.meta.ID), c.status)
}

func (s *Service) getContainer(id string) (*container, error) { return s.containers.get(id) }

// containersOf returns the containers of pod sandboxID.
func (s *Service) containersOf(sandboxID string) []*container {
	var out []*container
	for _, c := range s.containers.list() {
		if c.meta.SandboxID == sandboxID {
			out = append(out, c)
		}
	}
	return out
}

// criState is the CRI state of a recorded state.
func criState(state string) runtime.ContainerState {
	switch state {
	case stateCreated:
		return runtime.ContainerState_CONTAINER_CREATED
	case stateRunning:
		return runtime.ContainerState_CONTAINER_RUNNING
	case stateExited:
		return runtime.ContainerState_CONTAINER_EXITED
	}
	return runtime.ContainerState_CONTAINER_UNKNOWN
}

// validateContainerConfig checks what a container cannot be made without.
func validateContainerConfig(cfg *runtime.ContainerConfig) error {
	switch {
	case cfg.GetMetadata() == nil:
		return fmt.Errorf("container config has no metadata: %w", errdefs.ErrInvalidArgument)
	case cfg.GetMetadata().GetName() == "":
		return fmt.Errorf("container config: metadata has no name: %w", errdefs.ErrInvalidArgument)
	case cfg.GetImage().GetImage() == "":
		return fmt.Errorf("container %q: no image given: %w", cfg.GetMetadata().GetName(), errdefs.ErrInvalidArgument)
	}
	sc := cfg.GetLinux().GetSecurityContext()
	if sc.GetRunAsGroup() != nil && sc.GetRunAsUser() == nil && sc.GetRunAsUsername() == "" {
		return fmt.Errorf("container %q: run_as_group is set without run_as_user or run_as_username: %w", cfg.GetMetadata().GetName(), errdefs.ErrInvalidArgument)
	}
	if sc.GetRunAsUser() != nil && sc.GetRunAsUsername() != "" {
		return fmt.Errorf("container %q: run_as_user and run_as_username are both set: %w", cfg.GetMetadata().GetName(), errdefs.ErrInvalidArgument)
	}
	if userns := sc.GetNamespaceOptions().GetUsernsOptions(); userns != nil && userns.GetMode() != runtime.NamespaceMode_NODE {
		return fmt.Errorf("container %q: user namespaces (mode %s) are not supported by berth yet: %w", cfg.GetMetadata().GetName(), userns.GetMode(), errdefs.ErrNotImplemented)
	}
	return nil
}

func nowNanos() int64 { return time.Now().UnixNano() }
