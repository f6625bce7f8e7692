package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"time"

	"github.com/berth-dev/berth/procmem"
	"github.com/berth-dev/berth/runtime/shim"
	"github.com/berth-dev/berth/runtime/shim/bootstrap"
	"github.com/berth-dev/berth/runtime/shim/publisher"
	"github.com/berth-dev/berth/runtime/shim/reaper"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
)

// serve is the shim server: subreaper, task service on the inherited
// socket, until the daemon's Shutdown or SIGTERM.
// trimOnce trims the binary's resident pages after the first start.
var trimOnce sync.Once

func serve(f bootstrap.Flags) error {
	bundle, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("serve: bundle: %w", err)
	}
	logger := openLog(bundle, f.Debug)
	// Signals first: no child may exit unseen.
	signals := make(chan os.Signal, 32)
	signal.Notify(signals, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT)
	signal.Ignore(unix.SIGPIPE)
	if err := reaper.SetSubreaper(); err != nil {
		return err
	}
	r := reaper.New()
	runc.Monitor = r

	l, err := net.FileListener(os.NewFile(bootstrap.ListenerFD, "shim-socket"))
	if err != nil {
		return fmt.Errorf("serve: inherited socket on fd %d: %w", bootstrap.ListenerFD, err)
	}
	pub := publisher.New(os.Getenv(bootstrap.EnvTTRPCAddress), f.Namespace, func(topic string, err error) {
		logger.Warn("publish event", "topic", topic, "error", err)
	})
	done := make(chan struct{})
	svc := shim.New(shim.Config{
		Namespace: f.Namespace,
		Publisher: pub,
		Exits:     r.Exits(),
		Shutdown:  func() { close(done) },
		// Start-up code is done with once the container runs: keep only
		// the binary pages the shim touches from then on (procmem).
		Started: func() {
			trimOnce.Do(func() {
				if _, err := procmem.TrimText(); err != nil {
					logger.Warn("trim binary pages", "error", err)
				}
			})
		},
		Errorf: func(format string, args ...any) { logger.Error(fmt.Sprintf(format, args...)) },
	})
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(shim.ErrorInterceptor))
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	svc.RegisterTTRPC(srv)
	go func() {
		if err := srv.Serve(context.Background(), l); err != nil && !errors.Is(err, ttrpc.ErrServerClosed) {
			logger.Error("ttrpc server", "error", err)
		}
	}()
	logger.Info("shim serving", "pid", os.Getpid(), "namespace", f.Namespace, "id", f.ID, "address", l.Addr().String())
	waitForEnd(r, signals, done, logger)
	return stop(srv, l, pub, logger)
}

// waitForEnd reaps children until the service or a signal ends the shim.
func waitForEnd(r *reaper.Reaper, signals chan os.Signal, done chan struct{}, logger *slog.Logger) {
	for {
		select {
		case sig := <-signals:
			if sig == unix.SIGCHLD {
				r.Reap()
				continue
			}
			logger.Info("shim stopping on signal", "signal", sig)
			return
		case <-done:
			logger.Info("shim shutting down")
			return
		}
	}
}

// stop closes the server and the socket, and flushes pending events.
func stop(srv *ttrpc.Server, l net.Listener, pub *publisher.Publisher, logger *slog.Logger) error {
	path := l.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		srv.Close()
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		logger.Warn("remove shim socket", "path", path, "error", err)
	}
	pub.Close(5 * time.Second)
	return nil
}

// openLog logs to the bundle's `log` FIFO, which the daemon reads, or
// nowhere if it has none; stderr goes there too. Writes never block: a full pipe drops the line.
func openLog(bundle string, debug bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	fd, err := unix.Open(filepath.Join(bundle, "log"), unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return slog.New(slog.DiscardHandler)
	}
	// A panic's trace goes to stderr: let the daemon see it too.
	_ = unix.Dup2(fd, 2)
	return slog.New(slog.NewTextHandler(dropWriter(fd), &slog.HandlerOptions{Level: level}))
}

// dropWriter writes to a non-blocking descriptor and drops what does not
// fit.
type dropWriter int

func (w dropWriter) Write(b []byte) (int, error) {
	_, _ = unix.Write(int(w), b)
	return len(b), nil
}
