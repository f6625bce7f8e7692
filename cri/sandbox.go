package cri

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/network"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A pod sandbox is a pause process in the pod's namespaces, run as a task
// of the shim manager like any container; the pod's containers join its
// namespaces. Its lifecycle, as the kubelet drives it:
//
//	RunPodSandbox ──► READY ── pause exits, or StopPodSandbox ──► NOTREADY
//	NOTREADY ── RemovePodSandbox ──► (gone)
//
// StopPodSandbox stops the pod's containers and the pause task, unmounts
// the pod's /dev/shm and tears the network down, once: a second stop
// finds nothing left to do. RemovePodSandbox stops first, then removes
// the containers, the network namespace, the files, the record and the
// snapshot. Both succeed for a pod that does not exist.

// sandboxMeta is what a pod sandbox is made from, recorded in its
// container record's extension; it never changes.
type sandboxMeta struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Config is the PodSandboxConfig, in protobuf's JSON.
	Config json.RawMessage `json:"config"`
	// RuntimeHandler is the handler the request named ("" for the
	// default); Handler is the one it resolved to.
	RuntimeHandler string `json:"runtimeHandler"`
	Handler        string `json:"handler"`
	RuntimeType    string `json:"runtimeType"`
	Image          string `json:"image"`
	ImageID        string `json:"imageID"`
	// NetNS is the pinned network namespace, "" with the host's network.
	NetNS     string `json:"netns,omitempty"`
	CreatedAt int64  `json:"createdAt"`
}

// sandboxStatus is what changes, kept in <root>/sandboxes/<id>/status.json.
type sandboxStatus struct {
	Ready bool   `json:"ready"`
	Pid   uint32 `json:"pid,omitempty"`
	// Network is what CNI ADD did; nil with the host's network or once
	// torn down.
	Network  *network.PodResult `json:"network,omitempty"`
	IPs      []string           `json:"ips,omitempty"`
	ExitedAt int64              `json:"exitedAt,omitempty"`
}

// sandbox is one pod sandbox in memory.
type sandbox struct {
	meta   sandboxMeta
	config *runtime.PodSandboxConfig

	// mu serializes the lifecycle calls (stop, remove) of the sandbox.
	mu sync.Mutex

	smu    sync.Mutex // guards status and exited
	status sandboxStatus
	// exited is closed once the pause process is gone.
	exited chan struct{}
}

func (sb *sandbox) getStatus() sandboxStatus {
	sb.smu.Lock()
	defer sb.smu.Unlock()
	st := sb.status
	st.IPs = append([]string(nil), st.IPs...)
	return st
}

// sandboxName is containerd's unique name of a pod's sandbox.
func sandboxName(m *runtime.PodSandboxMetadata) string {
	return strings.Join([]string{m.GetName(), m.GetNamespace(), m.GetUid(), fmt.Sprint(m.GetAttempt())}, "_")
}

func (s *Service) sandboxRoot(id string) string  { return filepath.Join(s.deps.Root, "sandboxes", id) }
func (s *Service) sandboxState(id string) string { return filepath.Join(s.deps.State, "sandboxes", id) }
func (s *Service) netnsPath(id string) string    { return filepath.Join(s.deps.State, "netns", id) }

func (s *Service) sandboxStatusPath(id string) string {
	return filepath.Join(s.sandboxRoot(id), "status.json")
}

// setStatus changes the sandbox's status with fn and writes it.
func (s *Service) setSandboxStatus(sb *sandbox, fn func(*sandboxStatus)) error {
	sb.smu.Lock()
	defer sb.smu.Unlock()
	fn(&sb.status)
	return writeJSON(s.sandboxStatusPath(sb.meta.ID), sb.status)
}

// getSandbox finds a sandbox by ID or unique ID prefix.
func (s *Service) getSandbox(id string) (*sandbox, error) {
	return s.sandboxes.get(id)
}

func (sb *sandbox) hostNetwork() bool {
	return sb.config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtime.NamespaceMode_NODE
}

func (sb *sandbox) hostIPC() bool {
	return sb.config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetIpc() == runtime.NamespaceMode_NODE
}

func (sb *sandbox) hostPID() bool {
	return sb.config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid() == runtime.NamespaceMode_NODE
}

// marshalConfig encodes a CRI message for the records.
func marshalConfig(m proto.Message) (json.RawMessage, error) {
	return protojson.Marshal(m)
}

// validateSandboxConfig checks what a sandbox cannot be made without.
func validateSandboxConfig(cfg *runtime.PodSandboxConfig) error {
	m := cfg.GetMetadata()
	switch {
	case m == nil:
		return fmt.Errorf("pod sandbox config has no metadata: %w", errdefs.ErrInvalidArgument)
	case m.GetName() == "":
		return fmt.Errorf("pod sandbox config: metadata has no name: %w", errdefs.ErrInvalidArgument)
	}
	if userns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions(); userns != nil && userns.GetMode() != runtime.NamespaceMode_NODE {
		return fmt.Errorf("pod %q: user namespaces (mode %s) are not supported by berth yet: %w", m.GetName(), userns.GetMode(), errdefs.ErrNotImplemented)
	}
	sc := cfg.GetLinux().GetSecurityContext()
	if sc.GetRunAsGroup() != nil && sc.GetRunAsUser() == nil {
		return fmt.Errorf("pod %q: run_as_group is set without run_as_user: %w", m.GetName(), errdefs.ErrInvalidArgument)
	}
	return nil
}

// timeNanos is t in nanoseconds since the epoch, 0 for the zero time.
func timeNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
