// Package daemon assembles berthd: it locks the root, initializes every
// plugin in order (a failed plugin is recorded, not fatal, unless the
// config requires it), serves the gRPC API and the ttrpc socket, and shuts
// all down cleanly.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/berth-dev/berth/config"
	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/plugin"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc"
)

// Daemon is a running berthd.
type Daemon struct {
	cfg     *config.Config
	logger  *slog.Logger
	plugins *plugin.Set
	lock    *os.File
	grpc    *grpc.Server
	ttrpc   *ttrpc.Server
	cancel  context.CancelFunc
	// sockets are the socket files this daemon created, removed on Close.
	sockets []string

	criOnce sync.Once
	cri     *criSection
}

// New locks the root and initializes every plugin. Serve starts serving.
func New(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*Daemon, error) {
	for _, dir := range []string{cfg.Root, cfg.State} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
	}
	lock, err := lockRoot(cfg.Root)
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, logger: logger, plugins: &plugin.Set{}, lock: lock}
	ctx, d.cancel = context.WithCancel(log.WithLogger(context.WithoutCancel(ctx), logger))
	if err := d.initPlugins(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func (d *Daemon) initPlugins(ctx context.Context) error {
	for _, r := range d.registrations() {
		if slices.Contains(d.cfg.DisabledPlugins, r.URI()) {
			d.logger.Info("plugin disabled by config", "plugin", r.URI())
			continue
		}
		ic := &plugin.InitContext{
			Root:  filepath.Join(d.cfg.Root, r.URI()),
			State: filepath.Join(d.cfg.State, r.URI()),
		}
		p := d.initPlugin(ctx, r, ic)
		if p.Err != nil {
			d.logger.Error("plugin failed to start", "plugin", r.URI(), "error", p.Err)
			if slices.Contains(d.cfg.RequiredPlugins, r.URI()) {
				return fmt.Errorf("required plugin %s failed: %w", r.URI(), p.Err)
			}
		}
	}
	for _, w := range d.cfg.UndecodedPlugins() {
		d.logger.Warn(w.String() + " (no berth plugin reads this section)")
	}
	for name, pp := range d.cfg.ProxyPlugins {
		d.logger.Warn("proxy plugin not served yet, ignored", "name", name, "type", pp.Type, "address", pp.Address)
	}
	return nil
}

// initPlugin decodes the plugin's config section, creates its directories
// and runs its init function; any failure is recorded on the plugin.
func (d *Daemon) initPlugin(ctx context.Context, r *plugin.Registration, ic *plugin.InitContext) *plugin.Plugin {
	failed := func(err error) *plugin.Plugin {
		return d.plugins.Add(ctx, &plugin.Registration{Type: r.Type, ID: r.ID, Requires: r.Requires,
			InitFn: func(context.Context, *plugin.InitContext) (any, error) { return nil, err }}, ic)
	}
	if r.Config != nil {
		ic.Config = r.Config()
		warnings, err := d.cfg.DecodePlugin(r.URI(), ic.Config)
		for _, w := range warnings {
			d.logger.Warn(w.String())
		}
		if err != nil {
			return failed(err)
		}
	}
	for _, dir := range []string{ic.Root, ic.State} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return failed(err)
		}
	}
	return d.plugins.Add(ctx, r, ic)
}

// Serve serves the gRPC API and the ttrpc socket until ctx ends or a
// listener fails, then shuts down.
func (d *Daemon) Serve(ctx context.Context) error {
	d.grpc = d.newGRPCServer()
	tsrv, err := d.newTTRPCServer()
	if err != nil {
		return err
	}
	d.ttrpc = tsrv
	for _, p := range d.plugins.Plugins() {
		if s, ok := p.Instance.(grpcService); ok && p.Err == nil {
			s.Register(d.grpc)
		}
		if s, ok := p.Instance.(ttrpcService); ok && p.Err == nil {
			s.RegisterTTRPC(d.ttrpc)
		}
	}
	gl, err := listenUnix(d.cfg.GRPC.Address, d.cfg.GRPC.UID, d.cfg.GRPC.GID)
	if err != nil {
		return err
	}
	tl, err := listenUnix(d.cfg.TTRPCAddress(), d.cfg.TTRPC.UID, d.cfg.TTRPC.GID)
	if err != nil {
		gl.Close()
		return err
	}
	d.sockets = []string{d.cfg.GRPC.Address, d.cfg.TTRPCAddress()}
	errc := make(chan error, 2)
	go func() { errc <- d.grpc.Serve(gl) }()
	go func() { errc <- d.ttrpc.Serve(context.WithoutCancel(ctx), tl) }()
	d.logger.Info("berthd serving", "address", d.cfg.GRPC.Address, "ttrpc", d.cfg.TTRPCAddress(), "root", d.cfg.Root)
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if errors.Is(err, net.ErrClosed) || errors.Is(err, ttrpc.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve: %w", err)
	}
}

// Close ends the streams that never end by themselves (event
// subscriptions), stops serving (giving in-flight calls a few seconds),
// stops the plugins and closes the database, then releases the root lock.
func (d *Daemon) Close() error {
	for _, p := range d.plugins.Plugins() {
		if s, ok := p.Instance.(streamService); ok && p.Err == nil {
			s.Shutdown()
		}
	}
	if d.grpc != nil {
		done := make(chan struct{})
		go func() { d.grpc.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			d.grpc.Stop()
		}
	}
	if d.ttrpc != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = d.ttrpc.Shutdown(ctx)
		cancel()
	}
	d.cancel()
	var errs []error
	// Plugins close in reverse order of start: the database before the
	// snapshotters and stores it sits on.
	for _, p := range slices.Backward(d.plugins.Plugins()) {
		if c, ok := p.Instance.(io.Closer); ok && p.Err == nil {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close plugin %s: %w", p.Registration.URI(), err))
			}
		}
	}
	if d.lock != nil {
		errs = append(errs, d.lock.Close())
	}
	for _, a := range d.sockets {
		_ = os.Remove(a)
	}
	return errors.Join(errs...)
}
