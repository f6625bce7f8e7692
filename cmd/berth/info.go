package main

import (
	"context"
	"fmt"
	"io"
	"strconv"

	introspectionapi "github.com/containerd/containerd/api/services/introspection/v1"
	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The introspection gRPC plugin is where berthd exports its paths, under
// these keys of Plugin.Exports. containerd exports none of them.
const (
	introspectionType = "io.containerd.grpc.v1"
	introspectionID   = "introspection"
)

type infoView struct {
	Server       serverInfo        `json:"server"`
	Deprecations []deprecationView `json:"deprecations,omitempty"`
	Plugins      []pluginView      `json:"plugins"`
}

type serverInfo struct {
	Version      string `json:"version"`
	Revision     string `json:"revision"`
	UUID         string `json:"uuid"`
	PID          uint64 `json:"pid,omitempty"`
	PIDNamespace uint64 `json:"pidNamespace,omitempty"`
	Root         string `json:"root,omitempty"`
	State        string `json:"state,omitempty"`
	Config       string `json:"config,omitempty"`
	Address      string `json:"address,omitempty"`
}

type deprecationView struct {
	ID      string `json:"id"`
	Message string `json:"message"`
}

func newInfoCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Show the daemon's version, paths and plugins",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				info, err := fetchInfo(ctx, c)
				if err != nil {
					return err
				}
				return a.out().print(info, info.write)
			})
		},
	}
}

func fetchInfo(ctx context.Context, c *conn) (infoView, error) {
	server, deprecations, err := fetchServerInfo(ctx, c)
	if err != nil {
		return infoView{}, err
	}
	plugins, err := listPlugins(ctx, c, nil)
	if err != nil {
		return infoView{}, err
	}
	server.addExports(plugins)
	return infoView{Server: server, Deprecations: deprecations, Plugins: orEmpty(plugins)}, nil
}

// fetchServerInfo asks the version and introspection services about the
// daemon itself.
func fetchServerInfo(ctx context.Context, c *conn) (serverInfo, []deprecationView, error) {
	ver, err := versionapi.NewVersionClient(c.cc).Version(ctx, &emptypb.Empty{})
	if err != nil {
		return serverInfo{}, nil, err
	}
	srv, err := introspectionapi.NewIntrospectionClient(c.cc).Server(ctx, &emptypb.Empty{})
	if err != nil {
		return serverInfo{}, nil, err
	}
	info := serverInfo{
		Version:      ver.GetVersion(),
		Revision:     ver.GetRevision(),
		UUID:         srv.GetUUID(),
		PID:          srv.GetPid(),
		PIDNamespace: srv.GetPidns(),
	}
	var deprecations []deprecationView
	for _, d := range srv.GetDeprecations() {
		deprecations = append(deprecations, deprecationView{ID: d.GetID(), Message: d.GetMessage()})
	}
	return info, deprecations, nil
}

// addExports copies the daemon's paths from the introspection plugin.
func (s *serverInfo) addExports(plugins []pluginView) {
	for _, p := range plugins {
		if p.Type != introspectionType || p.ID != introspectionID {
			continue
		}
		s.Root = p.Exports["root"]
		s.State = p.Exports["state"]
		s.Config = p.Exports["config"]
		s.Address = p.Exports["address"]
	}
}

func (info infoView) write(w io.Writer) error {
	server := &section{title: "Server"}
	server.add("Version", info.Server.Version)
	server.add("Revision", dash(info.Server.Revision))
	server.add("UUID", dash(info.Server.UUID))
	pid := "-"
	if info.Server.PID != 0 {
		pid = strconv.FormatUint(info.Server.PID, 10)
	}
	server.add("PID", pid)
	server.add("Root", dash(info.Server.Root))
	server.add("State", dash(info.Server.State))
	server.add("Config", dash(info.Server.Config))
	server.add("Address", dash(info.Server.Address))
	sections := []*section{server}
	if len(info.Deprecations) > 0 {
		dep := &section{title: "Deprecations"}
		for _, d := range info.Deprecations {
			dep.add(d.ID, d.Message)
		}
		sections = append(sections, dep)
	}
	if err := writeSections(w, sections...); err != nil {
		return err
	}
	fmt.Fprintln(w, "Plugins:")
	t := newTable("TYPE", "ID", "STATUS")
	for _, p := range info.Plugins {
		t.add(p.Type, p.ID, p.Status)
	}
	return t.write(w)
}
