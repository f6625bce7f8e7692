// Command berth is the command-line client of berthd. It speaks containerd's
// gRPC API over berthd's unix socket, so it works against containerd too.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// errReported ends a command that has already printed its errors (such as
// `rm` of several names where some failed); it only sets the exit code.
var errReported = errors.New("errors reported")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// execute runs the berth command line args and returns the exit code.
func execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer,
	getenv func(string) string) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRootCommand(a, getenv)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		if code, ok := exitCodeOf(err); ok {
			return code // a container's exit status, as run's own
		}
		if !errors.Is(err, errReported) {
			a.printError(err)
		}
		return 1
	}
	return 0
}

// globalOptions are the flags every command shares.
type globalOptions struct {
	address   string
	namespace string
	format    string
	timeout   time.Duration
}

// app is what commands share: the global options and the standard streams.
type app struct {
	opts   globalOptions
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

func newRootCommand(a *app, getenv func(string) string) *cobra.Command {
	root := &cobra.Command{
		Use:           "berth",
		Short:         "Command-line client for berthd",
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return a.opts.validate()
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&a.opts.address, "address", envOr(getenv, "BERTH_ADDRESS", defaultAddress),
		"berthd socket (env BERTH_ADDRESS)")
	f.StringVarP(&a.opts.namespace, "namespace", "n", envOr(getenv, "BERTH_NAMESPACE", defaultNamespace),
		"namespace to act in (env BERTH_NAMESPACE)")
	f.StringVar(&a.opts.format, "format", formatTable, "output format: table or json")
	f.DurationVar(&a.opts.timeout, "timeout", 0, "time limit for the whole command, 0 for none")
	root.AddCommand(
		newVersionCommand(a),
		newInfoCommand(a),
		newNamespacesCommand(a),
		newContentCommand(a),
		newImagesCommand(a),
		newPluginsCommand(a),
		newEventsCommand(a),
		newPullCommand(a),
		newPushCommand(a),
		newTagCommand(a),
		newSnapshotsCommand(a),
		newLoginCommand(a),
		newLogoutCommand(a),
	)
	addContainerCommands(root, a, getenv)
	return root
}

func envOr(getenv func(string) string, key, fallback string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return fallback
}

func (o globalOptions) validate() error {
	if o.format != formatTable && o.format != formatJSON {
		return fmt.Errorf("invalid --format %q: use %s or %s", o.format, formatTable, formatJSON)
	}
	if o.address == "" {
		return errors.New("empty --address: name berthd's socket")
	}
	if o.namespace == "" {
		return errors.New("empty --namespace: name a namespace such as " + defaultNamespace)
	}
	if o.timeout < 0 {
		return fmt.Errorf("negative --timeout %s", o.timeout)
	}
	return nil
}

// parseLabels parses k=v arguments. An empty value is kept: label commands
// send it to remove the label.
func parseLabels(args []string) (map[string]string, error) {
	labels := make(map[string]string, len(args))
	for _, arg := range args {
		k, v, ok := strings.Cut(arg, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid label %q: want key=value", arg)
		}
		labels[k] = v
	}
	return labels, nil
}

// labelPaths is the update mask that sets (or, for empty values, removes)
// exactly the given labels and leaves the others alone.
func labelPaths(labels map[string]string) []string {
	paths := make([]string, 0, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		paths = append(paths, "labels."+k)
	}
	return paths
}
