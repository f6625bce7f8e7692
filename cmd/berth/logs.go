package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	"github.com/containerd/errdefs"
	"github.com/spf13/cobra"
)

// followInterval is how often logs -f looks for new output.
const followInterval = 100 * time.Millisecond

type logsOptions struct {
	follow bool
	tail   int
}

func newLogsCommand(a *app) *cobra.Command {
	var o logsOptions
	cmd := &cobra.Command{
		Use:   "logs [-f] [--tail N] CONTAINER",
		Short: "Print the output of a container started with run -d or start",
		Long: `Print the output of a detached container: the log file its berth.dev/log-uri
label names, which the shim appends stdout and stderr to. With -f, keep
printing new output until the container exits.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				rec, err := findContainer(ctx, a, c, args[0])
				if err != nil {
					return err
				}
				return printLogs(ctx, a, c, rec, o)
			})
		},
	}
	cmd.Flags().BoolVarP(&o.follow, "follow", "f", false, "keep printing new output until the container exits")
	cmd.Flags().IntVar(&o.tail, "tail", -1, "print only the last N lines (-1: all)")
	return cmd
}

func printLogs(ctx context.Context, a *app, c *conn, rec *containersapi.Container, o logsOptions) error {
	path := logPath(rec)
	if path == "" {
		return fmt.Errorf("container %s has no log file: only containers started detached (berth run -d, berth start) have one: %w",
			describe(rec), errdefs.ErrNotFound)
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) && o.follow {
		f, err = waitForFile(ctx, path)
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil // started, but it printed nothing yet
	}
	if err != nil {
		return fmt.Errorf("log of container %s: %w", describe(rec), err)
	}
	defer f.Close()
	if err := copyTail(a.stdout, f, o.tail); err != nil {
		return fmt.Errorf("log of container %s: %w", describe(rec), err)
	}
	if !o.follow {
		return nil
	}
	return follow(ctx, a.stdout, f, exited(ctx, proc{c: c, id: rec.GetID()}))
}

// waitForFile opens path once the shim created it: a container that has not
// written yet has no log file.
func waitForFile(ctx context.Context, path string) (*os.File, error) {
	for range 20 {
		f, err := os.Open(path)
		if !errors.Is(err, os.ErrNotExist) {
			return f, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(followInterval):
		}
	}
	return nil, os.ErrNotExist
}

// exited returns a channel closed once p has exited or has no task.
func exited(ctx context.Context, p proc) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = p.wait(ctx)
	}()
	return done
}

// copyTail copies the last n lines of r to w, all of it when n < 0.
func copyTail(w io.Writer, r io.ReadSeeker, n int) error {
	if n < 0 {
		_, err := io.Copy(w, r)
		return err
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, err = w.Write(lastLines(b, n))
	return err
}

// lastLines is the last n lines of b; a last line without a newline counts.
func lastLines(b []byte, n int) []byte {
	if n == 0 {
		return nil
	}
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end--
	}
	for i := end - 1; i >= 0; i-- {
		if b[i] == '\n' {
			n--
			if n == 0 {
				return b[i+1:]
			}
		}
	}
	return b
}

// follow copies what is appended to f to w until done is closed, and then
// what was appended before that.
func follow(ctx context.Context, w io.Writer, f *os.File, done <-chan struct{}) error {
	ticker := time.NewTicker(followInterval)
	defer ticker.Stop()
	for {
		if _, err := io.Copy(w, f); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil // interrupted: the normal end of logs -f
		case <-done:
			_, err := io.Copy(w, f)
			return err
		case <-ticker.C:
		}
	}
}
