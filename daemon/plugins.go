package daemon

import (
	"context"
	"path/filepath"

	"github.com/berth-dev/berth/content/local"
	"github.com/berth-dev/berth/diff/apply"
	"github.com/berth-dev/berth/events/exchange"
	"github.com/berth-dev/berth/gc"
	"github.com/berth-dev/berth/metadata"
	"github.com/berth-dev/berth/plugin"
	containerssvc "github.com/berth-dev/berth/services/containers"
	contentsvc "github.com/berth-dev/berth/services/content"
	diffsvc "github.com/berth-dev/berth/services/diff"
	eventssvc "github.com/berth-dev/berth/services/events"
	imagessvc "github.com/berth-dev/berth/services/images"
	introspectionsvc "github.com/berth-dev/berth/services/introspection"
	leasessvc "github.com/berth-dev/berth/services/leases"
	namespacessvc "github.com/berth-dev/berth/services/namespaces"
	snapshotssvc "github.com/berth-dev/berth/services/snapshots"
	versionsvc "github.com/berth-dev/berth/services/version"
	"github.com/berth-dev/berth/snapshots"
	"github.com/berth-dev/berth/snapshots/native"
	"github.com/berth-dev/berth/snapshots/overlay"
	"github.com/berth-dev/berth/version"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc"
)

// grpcService is what a gRPC plugin's instance is.
type grpcService interface{ Register(*grpc.Server) }

// ttrpcService is what a ttrpc plugin's instance is.
type ttrpcService interface{ RegisterTTRPC(*ttrpc.Server) }

// streamService is a service with streams that never end by themselves
// (event subscriptions); Shutdown ends them.
type streamService interface{ Shutdown() }

// registrations lists every plugin in initialization order; each requires
// only plugins listed before it.
func (d *Daemon) registrations() []*plugin.Registration {
	regs := []*plugin.Registration{
		{Type: plugin.EventPlugin, ID: "exchange", InitFn: func(context.Context, *plugin.InitContext) (any, error) {
			return exchange.New(), nil
		}},
		{Type: plugin.ContentPlugin, ID: "content", InitFn: func(_ context.Context, ic *plugin.InitContext) (any, error) {
			ic.Exports["root"] = ic.Root
			return local.NewStore(ic.Root)
		}},
		{Type: plugin.SnapshotPlugin, ID: "overlayfs", InitFn: func(_ context.Context, ic *plugin.InitContext) (any, error) {
			ic.Exports["root"] = ic.Root
			return overlay.NewSnapshotter(ic.Root)
		}},
		{Type: plugin.SnapshotPlugin, ID: "native", InitFn: func(_ context.Context, ic *plugin.InitContext) (any, error) {
			ic.Exports["root"] = ic.Root
			return native.NewSnapshotter(ic.Root)
		}},
		{Type: plugin.MetadataPlugin, ID: "bolt", Requires: []plugin.Type{plugin.ContentPlugin, plugin.EventPlugin, plugin.SnapshotPlugin}, InitFn: initMetadata},
		{Type: plugin.GCPlugin, ID: "scheduler", Requires: []plugin.Type{plugin.MetadataPlugin},
			Config: func() any { return gc.DefaultSchedulerConfig() }, InitFn: initGC},
		{Type: plugin.LeasePlugin, ID: "manager", Requires: []plugin.Type{plugin.MetadataPlugin}, InitFn: func(_ context.Context, ic *plugin.InitContext) (any, error) {
			db, err := getDB(ic)
			if err != nil {
				return nil, err
			}
			return db.Leases(), nil
		}},
		grpcPlugin("version", nil, func(*plugin.InitContext) (any, error) {
			return versionsvc.New(version.Version, version.Revision), nil
		}),
		grpcPlugin("introspection", nil, func(ic *plugin.InitContext) (any, error) {
			for k, v := range map[string]string{"root": d.cfg.Root, "state": d.cfg.State, "config": d.cfg.Path, "address": d.cfg.GRPC.Address} {
				ic.Exports[k] = v
			}
			return introspectionsvc.New(ic.Root, d.plugins.Plugins)
		}),
		grpcPlugin("namespaces", []plugin.Type{plugin.MetadataPlugin}, func(ic *plugin.InitContext) (any, error) {
			db, err := getDB(ic)
			return withDB(db, err, func() any { return namespacessvc.New(db.Namespaces()) })
		}),
		grpcPlugin("content", []plugin.Type{plugin.MetadataPlugin}, func(ic *plugin.InitContext) (any, error) {
			db, err := getDB(ic)
			return withDB(db, err, func() any { return contentsvc.New(db.ContentStore()) })
		}),
		grpcPlugin("images", []plugin.Type{plugin.MetadataPlugin, plugin.GCPlugin}, func(ic *plugin.InitContext) (any, error) {
			db, err := getDB(ic)
			return withDB(db, err, func() any { return imagessvc.New(db.Images()) })
		}),
		grpcPlugin("containers", []plugin.Type{plugin.MetadataPlugin, plugin.GCPlugin}, func(ic *plugin.InitContext) (any, error) {
			db, err := getDB(ic)
			return withDB(db, err, func() any { return containerssvc.New(db.Containers()) })
		}),
		grpcPlugin("leases", []plugin.Type{plugin.LeasePlugin}, func(ic *plugin.InitContext) (any, error) {
			lm, err := ic.Get(plugin.LeasePlugin)
			if err != nil {
				return nil, err
			}
			return leasessvc.New(lm.(*metadata.LeaseManager)), nil
		}),
		grpcPlugin("snapshots", []plugin.Type{plugin.MetadataPlugin}, func(ic *plugin.InitContext) (any, error) {
			db, err := getDB(ic)
			return withDB(db, err, func() any { return snapshotssvc.New(db.LookupSnapshotter) })
		}),
		{Type: plugin.DiffPlugin, ID: "walking", Requires: []plugin.Type{plugin.MetadataPlugin}, InitFn: func(_ context.Context, ic *plugin.InitContext) (any, error) {
			db, err := getDB(ic)
			return withDB(db, err, func() any { return apply.New(db.ContentStore()) })
		}},
		grpcPlugin("diff", []plugin.Type{plugin.DiffPlugin}, func(ic *plugin.InitContext) (any, error) {
			d, err := ic.Get(plugin.DiffPlugin)
			if err != nil {
				return nil, err
			}
			return diffsvc.New(d.(*apply.Differ)), nil
		}),
		grpcPlugin("events", []plugin.Type{plugin.EventPlugin}, func(ic *plugin.InitContext) (any, error) {
			ex, err := ic.Get(plugin.EventPlugin)
			if err != nil {
				return nil, err
			}
			return eventssvc.New(ex.(*exchange.Exchange)), nil
		}),
	}
	regs = append(regs, d.taskPlugins()...)
	regs = append(regs, d.transferPlugins()...)
	return append(regs, d.criPlugins()...)
}

func grpcPlugin(id string, requires []plugin.Type, fn func(*plugin.InitContext) (any, error)) *plugin.Registration {
	return &plugin.Registration{Type: plugin.GRPCPlugin, ID: id, Requires: requires,
		InitFn: func(_ context.Context, ic *plugin.InitContext) (any, error) { return fn(ic) }}
}

func initMetadata(ctx context.Context, ic *plugin.InitContext) (any, error) {
	cs, err := ic.Get(plugin.ContentPlugin)
	if err != nil {
		return nil, err
	}
	ex, err := ic.Get(plugin.EventPlugin)
	if err != nil {
		return nil, err
	}
	sns := map[string]snapshots.Snapshotter{}
	for id, sn := range ic.GetAll(plugin.SnapshotPlugin) {
		sns[id] = sn.(snapshots.Snapshotter)
	}
	path := filepath.Join(ic.Root, "meta.db")
	ic.Exports["path"] = path
	return metadata.Open(path, cs.(*local.Store), metadata.WithPublisher(ex.(*exchange.Exchange)), metadata.WithSnapshotters(sns))
}

// initGC starts the scheduler; it runs until the daemon's context ends.
func initGC(ctx context.Context, ic *plugin.InitContext) (any, error) {
	db, err := getDB(ic)
	if err != nil {
		return nil, err
	}
	s, err := gc.NewScheduler(gc.CollectorFunc(func(ctx context.Context) error {
		_, err := db.GarbageCollect(ctx)
		return err
	}), ic.Config.(*gc.SchedulerConfig))
	if err != nil {
		return nil, err
	}
	db.SetMutationCallback(s.Deleted)
	go s.Run(ctx)
	return s, nil
}

func getDB(ic *plugin.InitContext) (*metadata.DB, error) {
	db, err := ic.Get(plugin.MetadataPlugin)
	if err != nil {
		return nil, err
	}
	return db.(*metadata.DB), nil
}

func withDB(db *metadata.DB, err error, fn func() any) (any, error) {
	if err != nil {
		return nil, err
	}
	return fn(), nil
}
