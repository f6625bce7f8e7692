// Command berthd is the berth daemon: containerd's gRPC API on a unix
// socket, ttrpc for shims, every subsystem in one process.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/berth-dev/berth/config"
	"github.com/berth-dev/berth/cri"
	"github.com/berth-dev/berth/daemon"
	"github.com/berth-dev/berth/procmem"
	"github.com/berth-dev/berth/version"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "berthd: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	// The logging binary of CRI containers, started by their shims.
	if len(os.Args) > 1 && os.Args[1] == cri.LoggerFlag {
		return cri.RunLogger(os.Args[2:])
	}
	var (
		configPath = flag.String("config", config.DefaultPath, "config file (containerd's config.toml format, version 2 or 3)")
		root       = flag.String("root", "", "persistent data directory (default from config, else "+config.DefaultRoot+")")
		state      = flag.String("state", "", "transient state directory (default from config, else "+config.DefaultState+")")
		address    = flag.String("address", "", "gRPC socket (default from config, else "+config.DefaultGRPCAddress+")")
		level      = flag.String("log-level", "", "log level: trace, debug, info, warn, error (default from config, else info)")
		showVer    = flag.Bool("version", false, "print the version and exit")
	)
	flag.Parse()
	if *showVer {
		fmt.Printf("berthd %s %s\n", version.Version, version.Revision)
		return nil
	}
	cfg, warnings, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	override(&cfg.Root, *root)
	override(&cfg.State, *state)
	override(&cfg.GRPC.Address, *address)
	override(&cfg.Debug.Level, *level)
	logger, err := newLogger(cfg.Debug.Level, cfg.Debug.Format)
	if err != nil {
		return err
	}
	if cfg.Missing {
		logger.Info("config file not found, using defaults", "path", cfg.Path)
	}
	for _, w := range warnings {
		logger.Warn(w.String())
	}
	// berthd idles most of its life: half Go's default heap goal keeps
	// about 2 MiB less resident after bursts of work (bench/footprint).
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(50)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d, err := daemon.New(ctx, cfg, logger)
	if err != nil {
		return err
	}
	// Start-up code (plugin init, config decoding) is done with: keep only
	// the binary pages berthd touches from now on (package procmem).
	if _, err := procmem.TrimText(); err != nil {
		logger.Warn("trim binary pages", "error", err)
	}
	serveErr := d.Serve(ctx)
	logger.Info("shutting down")
	if err := d.Close(); err != nil && serveErr == nil {
		serveErr = fmt.Errorf("shutdown: %w", err)
	}
	return serveErr
}

func override(dst *string, flagValue string) {
	if flagValue != "" {
		*dst = flagValue
	}
}

func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	switch strings.ToLower(level) {
	case "trace", "debug":
		l = slog.LevelDebug
	case "info", "":
		l = slog.LevelInfo
	case "warn", "warning":
		l = slog.LevelWarn
	case "error", "fatal", "panic":
		l = slog.LevelError
	default:
		return nil, fmt.Errorf("log level %q: use trace, debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
}
