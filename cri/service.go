// Package cri serves the Kubernetes Container Runtime Interface on
// berthd's gRPC socket: runtime.v1.RuntimeService and
// runtime.v1.ImageService of k8s.io/cri-api, working in containerd
// namespace k8s.io, so that the kubelet and crictl use berthd as they use
// containerd.
//
// The image service is complete: pulls go through berthd's one pull
// pipeline (package pull) with the hosts.toml of registry.config_path and
// the request's credentials, and the CRI's view of images (IDs, repo tags
// and digests) is package cri/imagestore. Of the runtime service, Version,
// Status, RuntimeConfig and UpdateRuntimeConfig are served; pod sandboxes
// and containers answer Unimplemented (runtime_pending.go).
//
// Pod sandboxes and containers are served in sandbox*.go and
// container*.go: records in metadata, tasks through the shim manager
// (runtime/manager) in berthd's own process, networks through CNI
// (network.PodNetwork), specs from package oci, logs in the CRI format
// (logger.go). Exec, Attach and PortForward go through the streaming
// server of package cri/streaming (stream*.go); the CRI metrics are
// cAdvisor's container_* metrics (metrics.go); image volumes mount views
// of an image's snapshot (image_volume.go); runtime handlers announce
// recursive read-only mounts when their runc has them (features.go).
// Streamed metrics and checkpoints answer Unimplemented
// (runtime_pending.go).
//
// Errors are errdefs classes with messages naming the image and the
// namespace; the daemon's interceptor maps them to gRPC codes.
package cri

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/berth-dev/berth/containers"
	"github.com/berth-dev/berth/content"
	"github.com/berth-dev/berth/cri/imagestore"
	"github.com/berth-dev/berth/cri/streaming"
	"github.com/berth-dev/berth/events"
	"github.com/berth-dev/berth/images"
	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/namespaces"
	"github.com/berth-dev/berth/network"
	"github.com/berth-dev/berth/pull"
	"github.com/berth-dev/berth/runtime/handler"
	"github.com/berth-dev/berth/runtime/manager"
	"github.com/berth-dev/berth/snapshots"
	"github.com/containerd/platforms"
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Namespace is the containerd namespace of everything the CRI does.
const Namespace = "k8s.io"

// Deps are the daemon's parts the CRI works with.
type Deps struct {
	// Images and Content are the namespaced metadata stores.
	Images  images.Store
	Content content.Provider
	// Puller is the daemon's one pull pipeline, shared with the Transfer
	// service so that concurrent pulls share downloads.
	Puller *pull.Puller
	// SnapshotterRoot is the directory of the configured snapshotter,
	// whose usage ImageFsInfo reports.
	SnapshotterRoot string
	// Root and State are the CRI plugin's own directories.
	Root, State string

	// Containers are the container records; Snapshotter is the
	// configured snapshotter, namespaced by metadata.
	Containers  containers.Store
	Snapshotter snapshots.Snapshotter
	// Tasks is the shim manager the pause processes and containers run
	// through; nil when the task runtime failed (pods then fail).
	Tasks *manager.Manager
	// Events delivers the shims' events (/tasks/oom).
	Events events.Subscriber
	// LoggerBinary is the executable containers' output goes to, in its
	// CRI logger mode (see logger.go); "" copies the output in berthd.
	LoggerBinary string
}

// Service is the CRI of one daemon.
type Service struct {
	cfg      Config
	deps     Deps
	handlers *handler.Table
	images   *imagestore.Store
	registry *registries
	fsUsage  *dirUsage
	features featureProbe

	mu      sync.Mutex
	podCIDR string

	sandboxes  *index[*sandbox]
	containers *index[*container]
	net        *network.PodNetwork
	events     *broadcaster
	cpu        cpuSamples
	// stream is the streaming server of Exec and PortForward (stream.go),
	// nil until Start.
	stream *streaming.Server
	// stopping is set once berthd shuts down: tasks whose shims it
	// stops hearing from have not exited.
	stopping atomic.Bool
}

// New checks the configuration and returns the service. A runtime handler
// table that does not build fails it, as it fails containerd's CRI.
func New(cfg Config, deps Deps) (*Service, error) {
	handlers, err := handler.New(cfg.Containerd)
	if err != nil {
		return nil, fmt.Errorf("CRI runtime handlers: %w", err)
	}
	hostsDir := cfg.Registry.ConfigPath
	if hostsDir == "" {
		hostsDir = DefaultHostsDir
	}
	return &Service{
		cfg:        cfg,
		deps:       deps,
		handlers:   handlers,
		images:     imagestore.New(deps.Images, deps.Content, platforms.DefaultSpec()),
		registry:   newRegistries(hostsDir),
		fsUsage:    newDirUsage(deps.SnapshotterRoot),
		sandboxes:  newIndex[*sandbox]("pod sandbox"),
		containers: newIndex[*container]("container"),
		net:        network.NewPodNetwork(network.PodConfig{ConfDir: cfg.CNI.ConfDir, BinDirs: cfg.CNI.PluginDirs()}),
		events:     newBroadcaster(),
	}, nil
}

// Start restores the pods and containers a previous berthd left (their
// records, status files and the tasks the shim manager reconnected to)
// and follows their tasks until ctx ends. The daemon calls it once, after
// New.
func (s *Service) Start(ctx context.Context) {
	if s.deps.Tasks == nil {
		return
	}
	ctx = withNamespace(ctx)
	if err := s.startStreaming(ctx); err != nil {
		log.G(ctx).Error("CRI: no streaming server, Exec and PortForward fail", "error", err)
	}
	s.restore(ctx)
	go s.watchOOM(ctx)
}

// Shutdown ends the GetContainerEvents streams, which never end by
// themselves.
func (s *Service) Shutdown() {
	s.stopping.Store(true)
	s.events.close()
	if s.stream != nil {
		_ = s.stream.Close()
	}
}

// Register adds RuntimeService and ImageService to srv.
func (s *Service) Register(srv *grpc.Server) {
	runtime.RegisterRuntimeServiceServer(srv, &runtimeService{s: s})
	runtime.RegisterImageServiceServer(srv, &imageService{s: s})
}

// Config returns the configuration the service runs with.
func (s *Service) Config() Config { return s.cfg }

// PodCIDR is the pod CIDR the kubelet last gave with UpdateRuntimeConfig,
// "" before it did.
func (s *Service) PodCIDR() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.podCIDR
}

// withNamespace puts every CRI call in namespace k8s.io, whatever the
// request's containerd-namespace header says.
func withNamespace(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, Namespace)
}
