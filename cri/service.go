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
// Errors are errdefs classes with messages naming the image and the
// namespace; the daemon's interceptor maps them to gRPC codes.
package cri

import (
	"context"
	"fmt"
	"sync"

	"github.com/berth-dev/berth/content"
	"github.com/berth-dev/berth/cri/imagestore"
	"github.com/berth-dev/berth/images"
	"github.com/berth-dev/berth/namespaces"
	"github.com/berth-dev/berth/pull"
	"github.com/berth-dev/berth/runtime/handler"
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
}

// Service is the CRI of one daemon.
type Service struct {
	cfg      Config
	deps     Deps
	handlers *handler.Table
	images   *imagestore.Store
	registry *registries
	fsUsage  *dirUsage

	mu      sync.Mutex
	podCIDR string
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
		cfg:      cfg,
		deps:     deps,
		handlers: handlers,
		images:   imagestore.New(deps.Images, deps.Content, platforms.DefaultSpec()),
		registry: newRegistries(hostsDir),
		fsUsage:  newDirUsage(deps.SnapshotterRoot),
	}, nil
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
