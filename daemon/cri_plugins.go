package daemon

import (
	"context"
	"fmt"
	"os"

	"github.com/berth-dev/berth/cri"
	"github.com/berth-dev/berth/events"
	"github.com/berth-dev/berth/plugin"
	"github.com/berth-dev/berth/runtime/manager"
)

// criPlugins is the CRI, io.containerd.grpc.v1.cri as in containerd. Its
// configuration is read by criConfig (the section is shared with the task
// runtime), so the registration has no Config of its own.
func (d *Daemon) criPlugins() []*plugin.Registration {
	return []*plugin.Registration{{
		Type: plugin.GRPCPlugin, ID: "cri",
		Requires: []plugin.Type{plugin.MetadataPlugin, plugin.SnapshotPlugin, plugin.TransferPlugin, plugin.EventPlugin, runtimePlugin},
		InitFn:   d.initCRI,
	}}
}

// initCRI builds the CRI over the metadata stores, the configured
// snapshotter, the shim manager and the event exchange, and starts it:
// the pods and containers a previous berthd left are restored before the
// daemon serves.
func (d *Daemon) initCRI(ctx context.Context, ic *plugin.InitContext) (any, error) {
	sect := d.criConfig()
	if sect.Err != nil {
		return nil, sect.Err
	}
	cfg := sect.Config
	db, err := getDB(ic)
	if err != nil {
		return nil, err
	}
	if _, err := ic.GetByID(plugin.SnapshotPlugin, cfg.Snapshotter); err != nil {
		return nil, fmt.Errorf("CRI snapshotter %q: %w", cfg.Snapshotter, err)
	}
	t, err := ic.Get(plugin.TransferPlugin)
	if err != nil {
		return nil, err
	}
	// Without the task runtime the image service still works; pods fail
	// naming the runtime's error.
	var taskManager *manager.Manager
	if tasks, err := ic.Get(runtimePlugin); err != nil {
		d.logger.Error("CRI: no task runtime, pods cannot run", "error", err)
	} else {
		taskManager = tasks.(*manager.Manager)
	}
	ex, err := ic.Get(plugin.EventPlugin)
	if err != nil {
		return nil, err
	}
	ic.Exports["sandbox_image"] = cfg.SandboxImage
	ic.Exports["snapshotter"] = cfg.Snapshotter
	svc, err := cri.New(cfg, cri.Deps{
		Images:          db.Images(),
		Content:         db.ContentStore(),
		Puller:          t.(*transferLocal).puller,
		SnapshotterRoot: d.pluginExport(plugin.SnapshotPlugin, cfg.Snapshotter, "root"),
		Root:            ic.Root,
		State:           ic.State,
		Containers:      db.Containers(),
		Snapshotter:     db.Snapshotter(cfg.Snapshotter),
		Tasks:           taskManager,
		Events:          ex.(events.Subscriber),
		LoggerBinary:    loggerBinary(),
	})
	if err != nil {
		return nil, err
	}
	svc.Start(ctx)
	return svc, nil
}

// loggerBinary is berthd's own executable, which containers' logging
// binaries run in logger mode (cri.LoggerFlag); "" when it cannot be
// found, and the CRI then copies output itself.
func loggerBinary() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	return exe
}

// pluginExport is what an initialized plugin exports under key, "" if
// nothing.
func (d *Daemon) pluginExport(t plugin.Type, id, key string) string {
	for _, p := range d.plugins.Plugins() {
		if p.Registration.Type == t && p.Registration.ID == id && p.Err == nil {
			return p.Exports[key]
		}
	}
	return ""
}
