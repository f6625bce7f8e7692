package daemon

import (
	"context"
	"sync"

	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/metadata"
	"github.com/berth-dev/berth/plugin"
	"github.com/berth-dev/berth/pull"
	"github.com/berth-dev/berth/remotes"
	"github.com/berth-dev/berth/remotes/auth"
	"github.com/berth-dev/berth/remotes/hosts"
	"github.com/berth-dev/berth/remotes/registry"
	streamingsvc "github.com/berth-dev/berth/services/streaming"
	transfersvc "github.com/berth-dev/berth/services/transfer"
	transfertypes "github.com/containerd/containerd/api/types/transfer"
)

// TransferConfig is [plugins."io.containerd.transfer.v1.local"].
type TransferConfig struct {
	// ConfigPath is the certs.d directory of hosts.toml files, read at
	// each pull.
	ConfigPath string `toml:"config_path"`
	// MaxConcurrentDownloads bounds parallel layer downloads per pull.
	MaxConcurrentDownloads int `toml:"max_concurrent_downloads"`
}

// transferLocal is the daemon's pull machinery: one Puller, so that
// concurrent pulls share downloads, and the registry settings.
type transferLocal struct {
	db     *metadata.DB
	puller *pull.Puller
	cfg    *TransferConfig

	// clients keeps one registry client per hosts directory and scheme,
	// so tokens and connections are reused across pulls.
	mu      sync.Mutex
	clients map[string]*registry.Client
}

func (d *Daemon) initTransfer(ctx context.Context, ic *plugin.InitContext) (any, error) {
	db, err := getDB(ic)
	if err != nil {
		return nil, err
	}
	cfg := ic.Config.(*TransferConfig)
	if cfg.ConfigPath == "" {
		cfg.ConfigPath = d.criRegistryConfigPath()
	}
	if cfg.ConfigPath == "" {
		cfg.ConfigPath = defaultHostsDir
	}
	ic.Exports["config_path"] = cfg.ConfigPath
	p := NewPuller(db)
	if cfg.MaxConcurrentDownloads > 0 {
		p.DefaultConcurrency = cfg.MaxConcurrentDownloads
	}
	releaseOrphanPulls(ctx, db, p)
	return &transferLocal{db: db, puller: p, cfg: cfg}, nil
}

// releaseOrphanPulls drops the leases of pulls that a berthd killed
// mid-pull left on this root, so that the collector takes their
// half-written ingests and half-unpacked snapshots now rather than when
// the leases expire. A failure only costs that delay: it is logged.
func releaseOrphanPulls(ctx context.Context, db *metadata.DB, p *pull.Puller) {
	nss, err := db.Namespaces().List(ctx)
	if err == nil {
		_, err = p.ReleaseOrphans(ctx, nss)
	}
	if err != nil {
		log.G(ctx).Warn("leases of interrupted pulls not released; they expire within the hour", "error", err)
	}
}

// NewPuller returns a Puller over the namespaced stores of db.
func NewPuller(db *metadata.DB) *pull.Puller {
	return pull.New(pull.Stores{
		Content:     db.ContentStore(),
		Images:      db.Images(),
		Leases:      db.Leases(),
		Snapshotter: db.LookupSnapshotter,
	})
}

// resolver builds the registry client of one pull: hosts from the client's
// hosts directory or the configured one, credentials from `berth login`
// and docker's config.json.
func (t *transferLocal) resolver(_ context.Context, rr *transfertypes.RegistryResolver) (remotes.Resolver, error) {
	dir := t.cfg.ConfigPath
	if rr.GetHostDir() != "" {
		dir = rr.GetHostDir()
	}
	key := dir + "\x00" + rr.GetDefaultScheme()
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.clients[key]; ok {
		return c, nil
	}
	creds := auth.Chain(auth.NewStore("").Lookup, auth.DockerConfig(auth.DockerConfigPath()))
	hf := hosts.ConfigureHosts(dir)
	if rr.GetDefaultScheme() == "http" {
		hf = plainHTTP(hf)
	}
	c := registry.New(registry.WithHosts(hf), registry.WithCredentials(creds))
	if t.clients == nil {
		t.clients = map[string]*registry.Client{}
	}
	t.clients[key] = c
	return c, nil
}

// plainHTTP makes every host of hf speak plain HTTP, as a client's
// --plain-http asks.
func plainHTTP(hf hosts.HostsFunc) hosts.HostsFunc {
	return func(registryHost string) ([]hosts.Host, error) {
		hs, err := hf(registryHost)
		for i := range hs {
			hs[i].Scheme = "http"
		}
		return hs, err
	}
}

// defaultHostsDir is the certs.d directory when the config names none.
const defaultHostsDir = "/etc/berth/certs.d"

// criRegistryConfigPath returns the CRI plugin's registry config_path
// (version 2 or 3 layout), "" when unset: a node configured for
// containerd's CRI keeps its mirrors when it moves to berth.
func (d *Daemon) criRegistryConfigPath() string {
	return d.criConfig().Registry.ConfigPath
}

func (d *Daemon) transferPlugins() []*plugin.Registration {
	return []*plugin.Registration{
		{Type: plugin.TransferPlugin, ID: "local", Requires: []plugin.Type{plugin.MetadataPlugin},
			Config: func() any { return &TransferConfig{MaxConcurrentDownloads: 3} },
			InitFn: d.initTransfer},
		grpcPlugin("streaming", nil, func(*plugin.InitContext) (any, error) { return streamingsvc.New(), nil }),
		grpcPlugin("transfer", []plugin.Type{plugin.TransferPlugin}, func(ic *plugin.InitContext) (any, error) {
			t, err := ic.Get(plugin.TransferPlugin)
			if err != nil {
				return nil, err
			}
			s, err := ic.GetByID(plugin.GRPCPlugin, "streaming")
			if err != nil {
				return nil, err
			}
			tl := t.(*transferLocal)
			return transfersvc.New(tl.puller, tl.resolver, s.(*streamingsvc.Service), tl.db.ContentStore(), tl.db.Images()), nil
		}),
	}
}
