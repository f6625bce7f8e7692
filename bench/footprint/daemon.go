package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/berth-dev/berth/bench/internal/daemon"
)

// target is one daemon configuration measured side by side with the others.
type target struct {
	Name   string `json:"name"`
	Binary string `json:"binary"`
	// Containerd marks containerd, whose opt plugin the config keeps
	// inside the temp dir.
	Containerd bool `json:"-"`
	// Comparable marks the containerd run restricted to berthd's plugins;
	// Disabled, its disabled_plugins, is derived once both others ran.
	Comparable bool     `json:"comparable,omitempty"`
	Disabled   []string `json:"disabled_plugins,omitempty"`
}

// targets returns the daemons in table order: berthd, containerd as
// Debian ships it, and containerd with berthd's plugins only; containerd
// is left out when its path is "". measureAll relies on this order.
func targets(berthd, containerd string) []target {
	if containerd == "" {
		return []target{{Name: "berthd", Binary: berthd}}
	}
	return []target{
		{Name: "berthd", Binary: berthd},
		{Name: "containerd", Binary: containerd, Containerd: true},
		{Name: "containerd (comparable plugins)", Binary: containerd, Containerd: true, Comparable: true},
	}
}

// comparableDisabled is every containerd plugin berthd does not load, so
// that the restricted containerd serves what berthd serves. Two kinds stay
// although berthd has no plugin of that name: containerd's
// io.containerd.service.v1.X-service, the local half of each gRPC service X
// berthd serves, and the native snapshotter when berthd loads no
// snapshotter containerd has, since containerd's bolt plugin refuses to
// start without one.
func comparableDisabled(berthd, containerd []string) []string {
	keep := make(map[string]bool)
	for _, p := range berthd {
		keep[p] = true
		if svc, ok := strings.CutPrefix(p, "io.containerd.grpc.v1."); ok {
			keep["io.containerd.service.v1."+svc+"-service"] = true
		}
	}
	hasSnapshotter := slices.ContainsFunc(containerd, func(p string) bool {
		return keep[p] && strings.HasPrefix(p, "io.containerd.snapshotter.v1.")
	})
	if !hasSnapshotter {
		keep["io.containerd.snapshotter.v1.native"] = true
	}
	var disabled []string
	for _, p := range containerd {
		if !keep[p] && !slices.Contains(disabled, p) {
			disabled = append(disabled, p)
		}
	}
	slices.Sort(disabled)
	return disabled
}

// daemon is the daemon of t to start in dir.
func (t target) daemon(dir string) daemon.Config {
	c := daemon.Config{Name: t.Name, Binary: t.Binary, Dir: dir, Disabled: t.Disabled}
	if t.Containerd {
		c.Extra = daemon.ContainerdOpt(dir)
	}
	return c
}

// metaDBSize is the size of the daemon's bbolt file, which both keep at
// root/io.containerd.metadata.v1.bolt/meta.db and map into memory.
func metaDBSize(dir string) int64 {
	fi, err := os.Stat(filepath.Join(dir, "root", "io.containerd.metadata.v1.bolt", "meta.db"))
	if err != nil {
		return 0
	}
	return fi.Size()
}
