// Package log carries a *slog.Logger in a context, so that library code
// logs through whatever the daemon configured and stays quiet otherwise.
package log

import (
	"context"
	"io"
	"log/slog"
)

type loggerKey struct{}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// WithLogger returns a context carrying l.
func WithLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

// G returns the logger of ctx, or one that discards everything.
func G(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok {
		return l
	}
	return discard
}
