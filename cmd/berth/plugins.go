package main

import (
	"context"
	"strings"

	introspectionapi "github.com/containerd/containerd/api/services/introspection/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/spf13/cobra"
)

// Plugin statuses, as ctr shows them: a plugin that chose not to load says
// so with "skip plugin" in its init error.
const (
	pluginOK    = "ok"
	pluginSkip  = "skip"
	pluginError = "error"
)

type pluginView struct {
	Type         string            `json:"type"`
	ID           string            `json:"id"`
	Requires     []string          `json:"requires,omitempty"`
	Platforms    []string          `json:"platforms,omitempty"`
	Capabilities []string          `json:"capabilities,omitempty"`
	Exports      map[string]string `json:"exports,omitempty"`
	Status       string            `json:"status"`
	Error        string            `json:"error,omitempty"`
}

func newPluginsCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "plugins",
		Aliases: []string{"plugin"},
		Short:   "Inspect the daemon's plugins",
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "List plugins and whether they loaded",
		Long:    "List plugins, optionally only those matching any of the filters, such as type==io.containerd.content.v1.",
		RunE: func(cmd *cobra.Command, filters []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				plugins, err := listPlugins(ctx, c, filters)
				if err != nil {
					return err
				}
				return a.out().print(plugins, pluginTable(plugins).write)
			})
		},
	})
	return cmd
}

func listPlugins(ctx context.Context, c *conn, filters []string) ([]pluginView, error) {
	resp, err := introspectionapi.NewIntrospectionClient(c.cc).Plugins(ctx,
		&introspectionapi.PluginsRequest{Filters: filters})
	if err != nil {
		return nil, err
	}
	views := make([]pluginView, 0, len(resp.GetPlugins()))
	for _, p := range resp.GetPlugins() {
		views = append(views, newPluginView(p))
	}
	return views, nil
}

func newPluginView(p *introspectionapi.Plugin) pluginView {
	v := pluginView{
		Type:         p.GetType(),
		ID:           p.GetID(),
		Requires:     p.GetRequires(),
		Capabilities: p.GetCapabilities(),
		Exports:      p.GetExports(),
		Status:       pluginOK,
	}
	for _, pl := range p.GetPlatforms() {
		v.Platforms = append(v.Platforms, formatPlatform(pl))
	}
	if ie := p.GetInitErr(); ie != nil {
		v.Status = pluginError
		v.Error = ie.GetMessage()
		if strings.Contains(v.Error, "skip plugin") {
			v.Status = pluginSkip
		}
	}
	return v
}

// pluginTable has ctr's columns, plus why a plugin did not load.
func pluginTable(plugins []pluginView) *table {
	t := newTable("TYPE", "ID", "PLATFORMS", "STATUS", "ERROR")
	for _, p := range plugins {
		t.add(p.Type, p.ID, dash(strings.Join(p.Platforms, ",")), p.Status, dash(p.Error))
	}
	return t
}

// formatPlatform renders os/arch[/variant], the OCI shorthand.
func formatPlatform(p *types.Platform) string {
	parts := []string{p.GetOS(), p.GetArchitecture()}
	if p.GetVariant() != "" {
		parts = append(parts, p.GetVariant())
	}
	return strings.Join(parts, "/")
}
