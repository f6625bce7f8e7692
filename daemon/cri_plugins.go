package daemon

import (
	"fmt"

	"github.com/berth-dev/berth/cri"
	"github.com/berth-dev/berth/plugin"
)

// criPlugins is the CRI, io.containerd.grpc.v1.cri as in containerd. Its
// configuration is read by criConfig (the section is shared with the task
// runtime), so the registration has no Config of its own.
func (d *Daemon) criPlugins() []*plugin.Registration {
	return []*plugin.Registration{
		grpcPlugin("cri", []plugin.Type{plugin.MetadataPlugin, plugin.SnapshotPlugin, plugin.TransferPlugin}, d.initCRI),
	}
}

func (d *Daemon) initCRI(ic *plugin.InitContext) (any, error) {
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
	ic.Exports["sandbox_image"] = cfg.SandboxImage
	ic.Exports["snapshotter"] = cfg.Snapshotter
	return cri.New(cfg, cri.Deps{
		Images:          db.Images(),
		Content:         db.ContentStore(),
		Puller:          t.(*transferLocal).puller,
		SnapshotterRoot: d.pluginExport(plugin.SnapshotPlugin, cfg.Snapshotter, "root"),
		Root:            ic.Root,
		State:           ic.State,
	})
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
