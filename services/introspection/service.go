// Package introspection serves containerd.services.introspection.v1.
// Introspection: the daemon's plugins with their real init status, and the
// server's identity (a UUID kept under the root, pid, pid namespace).
package introspection

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/berth-dev/berth/filters"
	"github.com/berth-dev/berth/plugin"
	api "github.com/containerd/containerd/api/services/introspection/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Service is the gRPC service.
type Service struct {
	api.UnimplementedIntrospectionServer
	plugins func() []*plugin.Plugin
	uuid    string
}

// New returns the service. plugins is called at each request, so plugins
// initialized after this one are listed too; the UUID is read from (or
// created in) root/uuid.
func New(root string, plugins func() []*plugin.Plugin) (*Service, error) {
	id, err := loadUUID(filepath.Join(root, "uuid"))
	if err != nil {
		return nil, err
	}
	return &Service{plugins: plugins, uuid: id}, nil
}

// Register adds the service to s.
func (s *Service) Register(srv *grpc.Server) { api.RegisterIntrospectionServer(srv, s) }

func loadUUID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if _, perr := uuid.Parse(id); perr == nil {
			return id, nil
		}
		return "", fmt.Errorf("server uuid file %s holds %q, not a UUID: remove it to get a new one", path, id)
	}
	if !os.IsNotExist(err) {
		return "", fmt.Errorf("read server uuid: %w", err)
	}
	id := uuid.New().String()
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return "", err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id), 0o644); err != nil {
		return "", fmt.Errorf("write server uuid: %w", err)
	}
	return id, os.Rename(tmp, path)
}

func (s *Service) Plugins(ctx context.Context, req *api.PluginsRequest) (*api.PluginsResponse, error) {
	filter, err := filters.Parse(req.Filters...)
	if err != nil {
		return nil, err
	}
	resp := &api.PluginsResponse{}
	for _, p := range s.plugins() {
		if filter.Match(adaptor(p)) {
			resp.Plugins = append(resp.Plugins, toProto(p))
		}
	}
	return resp, nil
}

func (s *Service) Server(context.Context, *emptypb.Empty) (*api.ServerResponse, error) {
	resp := &api.ServerResponse{UUID: s.uuid, Pid: uint64(os.Getpid())}
	if fi, err := os.Stat("/proc/self/ns/pid"); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			resp.Pidns = st.Ino
		}
	}
	return resp, nil
}

func (s *Service) PluginInfo(ctx context.Context, req *api.PluginInfoRequest) (*api.PluginInfoResponse, error) {
	return nil, fmt.Errorf("plugin info of %s.%s: %w", req.Type, req.ID, errdefs.ErrNotImplemented)
}

func toProto(p *plugin.Plugin) *api.Plugin {
	out := &api.Plugin{
		Type:         string(p.Registration.Type),
		ID:           p.Registration.ID,
		Exports:      p.Exports,
		Capabilities: p.Capabilities,
	}
	for _, r := range p.Registration.Requires {
		out.Requires = append(out.Requires, string(r))
	}
	for _, pl := range p.Platforms {
		parts := strings.SplitN(pl, "/", 3)
		tp := &types.Platform{OS: parts[0]}
		if len(parts) > 1 {
			tp.Architecture = parts[1]
		}
		if len(parts) > 2 {
			tp.Variant = parts[2]
		}
		out.Platforms = append(out.Platforms, tp)
	}
	if p.Err != nil {
		out.InitErr = status.Convert(errgrpc.ToGRPC(p.Err)).Proto()
	}
	return out
}

func adaptor(p *plugin.Plugin) filters.Adaptor {
	return filters.AdaptorFunc(func(fp []string) (string, bool) {
		if len(fp) == 0 {
			return "", false
		}
		switch fp[0] {
		case "type":
			return string(p.Registration.Type), true
		case "id":
			return p.Registration.ID, true
		case "capabilities":
			return strings.Join(p.Capabilities, ","), len(p.Capabilities) > 0
		case "platforms", "platform":
			return strings.Join(p.Platforms, ","), len(p.Platforms) > 0
		}
		return "", false
	})
}
