package daemon

import (
	"github.com/berth-dev/berth/runtime/handler"
)

// criSection is the part of containerd's CRI configuration berthd acts on
// today: registry.config_path (hosts.toml directory) and the runtime
// handlers. Version 2 keeps both under "io.containerd.grpc.v1.cri"; version
// 3 splits them into "io.containerd.cri.v1.images" and
// "io.containerd.cri.v1.runtime". Each section is decoded once, so each
// key berth ignores is warned about once.
type criSection struct {
	Registry struct {
		ConfigPath string `toml:"config_path"`
	} `toml:"registry"`
	Containerd handler.Config `toml:"containerd"`
}

// criConfig decodes the CRI sections (once) and merges them.
func (d *Daemon) criConfig() *criSection {
	d.criOnce.Do(func() {
		d.cri = &criSection{}
		for _, id := range []string{"io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime"} {
			if !d.cfg.HasPlugin(id) {
				continue
			}
			var sect criSection
			warnings, err := d.cfg.DecodePlugin(id, &sect)
			for _, w := range warnings {
				d.logger.Warn(w.String())
			}
			if err != nil {
				d.logger.Error("CRI configuration unreadable, section ignored", "plugin", id, "error", err)
				continue
			}
			if sect.Registry.ConfigPath != "" {
				d.cri.Registry = sect.Registry
			}
			if sect.Containerd.DefaultRuntimeName != "" {
				d.cri.Containerd.DefaultRuntimeName = sect.Containerd.DefaultRuntimeName
			}
			if len(sect.Containerd.Runtimes) > 0 {
				d.cri.Containerd.Runtimes = sect.Containerd.Runtimes
			}
		}
	})
	return d.cri
}
