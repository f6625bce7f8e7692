package daemon

import (
	"context"

	"github.com/berth-dev/berth/events"
	"github.com/berth-dev/berth/plugin"
	"github.com/berth-dev/berth/runtime/handler"
	"github.com/berth-dev/berth/runtime/manager"
	taskssvc "github.com/berth-dev/berth/services/tasks"
)

// runtimePlugin is containerd's plugin type of task runtimes; the shim
// manager registers as io.containerd.runtime.v2.task, so bundles live in
// <state>/io.containerd.runtime.v2.task/<ns>/<id> as in containerd.
const runtimePlugin plugin.Type = "io.containerd.runtime.v2"

// taskPlugins are the shim manager and the Tasks service over it.
func (d *Daemon) taskPlugins() []*plugin.Registration {
	return []*plugin.Registration{
		{Type: runtimePlugin, ID: "task", Requires: []plugin.Type{plugin.EventPlugin}, InitFn: func(ctx context.Context, ic *plugin.InitContext) (any, error) {
			ic.Exports["state"] = ic.State
			handlers, err := handler.New(d.criConfig().Containerd)
			if err != nil {
				return nil, err
			}
			ex, err := ic.Get(plugin.EventPlugin)
			if err != nil {
				return nil, err
			}
			return manager.New(ctx, manager.Config{
				State: ic.State, GRPCAddress: d.cfg.GRPC.Address, TTRPCAddress: d.cfg.TTRPCAddress(),
				Handlers: handlers, Publisher: ex.(events.Publisher),
			})
		}},
		grpcPlugin("tasks", []plugin.Type{runtimePlugin, plugin.MetadataPlugin}, func(ic *plugin.InitContext) (any, error) {
			m, err := ic.Get(runtimePlugin)
			if err != nil {
				return nil, err
			}
			db, err := getDB(ic)
			return withDB(db, err, func() any { return taskssvc.New(db.Containers(), m.(*manager.Manager)) })
		}),
	}
}
