package main

// The container commands (run, ps, logs, exec, stop, kill, rm, start,
// inspect, top, stats) work like nerdctl's, all on the client side over
// berthd's gRPC API: a container is a record of the Containers service
// (spec, snapshot, runtime, labels) and, while it runs or after it ran, a
// task of the Tasks service. Containers created by ctr are listed and
// managed the same way; only berth's labels (name, log file) are missing.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/spf13/cobra"
)

// Labels of the container records berth creates.
const (
	// labelName is the container's name, unique in its namespace.
	labelName = "berth.dev/name"
	// labelLogURI is where a detached container's output goes (file://).
	labelLogURI = "berth.dev/log-uri"
	// labelStateDir is the CLI's directory for the container: its log,
	// resolv.conf, hosts and hostname files.
	labelStateDir = "berth.dev/state-dir"
	// labelNetwork is the --network mode: bridge, host or none.
	labelNetwork = "berth.dev/network"
	// labelPorts is the JSON list of published ports.
	labelPorts = "berth.dev/ports"
	// labelStopSignal is containerd's label for the image's StopSignal,
	// which ctr sets too.
	labelStopSignal = "io.containerd.image.config.stop-signal"
)

const (
	defaultDataRoot = "/var/lib/berth-cli"
	// shortIDLength is how much of an ID ps shows, as docker and nerdctl.
	shortIDLength = 12
)

// containerOptions are the flags the container commands share.
type containerOptions struct {
	// dataRoot holds the CLI's files: container logs, resolv.conf and
	// hosts files, and the CNI state.
	dataRoot string
}

// addContainerCommands adds the container commands and their global
// --data-root flag to root.
func addContainerCommands(root *cobra.Command, a *app, getenv func(string) string) {
	o := &containerOptions{}
	root.PersistentFlags().StringVar(&o.dataRoot, "data-root", envOr(getenv, "BERTH_DATA_ROOT", defaultDataRoot),
		"directory of the CLI's container files: logs, resolv.conf, CNI state (env BERTH_DATA_ROOT)")
	root.AddCommand(
		newRunCommand(a, o),
		newPsCommand(a),
		newLogsCommand(a),
		newExecCommand(a),
		newStopCommand(a),
		newKillCommand(a),
		newRmCommand(a, o),
		newStartCommand(a, o),
		newContainerInspectCommand(a, o),
		newTopCommand(a),
		newStatsCommand(a),
		newInternalCommand(),
	)
}

// containerDir is the CLI's directory for container id of namespace ns.
func (o *containerOptions) containerDir(ns, id string) (string, error) {
	root, err := filepath.Abs(o.dataRoot)
	if err != nil {
		return "", fmt.Errorf("--data-root %q: %w", o.dataRoot, err)
	}
	return filepath.Join(root, "containers", ns, id), nil
}

// containerName is a container's berth name, or "" for one made by ctr.
func containerName(rec *containersapi.Container) string { return rec.GetLabels()[labelName] }

// describe names a container for messages: its name and ID.
func describe(rec *containersapi.Container) string {
	if name := containerName(rec); name != "" {
		return fmt.Sprintf("%q (%s)", name, shortID(rec.GetID()))
	}
	return fmt.Sprintf("%q", shortID(rec.GetID()))
}

func shortID(id string) string {
	if len(id) > shortIDLength && isHex(id) {
		return id[:shortIDLength]
	}
	return id
}

func isHex(s string) bool {
	return strings.Trim(s, "0123456789abcdef") == ""
}

// listContainers returns the namespace's container records, newest first.
func listContainers(ctx context.Context, c *conn) ([]*containersapi.Container, error) {
	resp, err := containersapi.NewContainersClient(c.cc).List(ctx, &containersapi.ListContainersRequest{})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	recs := resp.GetContainers()
	slices.SortStableFunc(recs, func(x, y *containersapi.Container) int {
		return y.GetCreatedAt().AsTime().Compare(x.GetCreatedAt().AsTime())
	})
	return recs, nil
}

// findContainer resolves ref, a container's ID, its name or a prefix of
// its ID that no other container shares, to its record.
func findContainer(ctx context.Context, a *app, c *conn, ref string) (*containersapi.Container, error) {
	if ref == "" {
		return nil, fmt.Errorf("empty container name: %w", errdefs.ErrInvalidArgument)
	}
	resp, err := containersapi.NewContainersClient(c.cc).Get(ctx, &containersapi.GetContainerRequest{ID: ref})
	if err == nil {
		return resp.GetContainer(), nil
	}
	if !errdefs.IsNotFound(err) && !errdefs.IsInvalidArgument(err) {
		return nil, fmt.Errorf("container %q: %w", ref, err)
	}
	recs, err := listContainers(ctx, c)
	if err != nil {
		return nil, err
	}
	return matchContainer(recs, ref, a.opts.namespace)
}

// matchContainer picks ref among recs: by name first, then by unique ID
// prefix.
func matchContainer(recs []*containersapi.Container, ref, ns string) (*containersapi.Container, error) {
	var prefixed []*containersapi.Container
	for _, rec := range recs {
		if rec.GetID() == ref || containerName(rec) == ref {
			return rec, nil
		}
		if strings.HasPrefix(rec.GetID(), ref) {
			prefixed = append(prefixed, rec)
		}
	}
	switch len(prefixed) {
	case 0:
		return nil, fmt.Errorf("no container %q in namespace %q (berth ps -a lists them): %w", ref, ns, errdefs.ErrNotFound)
	case 1:
		return prefixed[0], nil
	}
	ids := make([]string, len(prefixed))
	for i, rec := range prefixed {
		ids[i] = rec.GetID()
	}
	return nil, fmt.Errorf("%q is a prefix of %d containers' IDs (%s): give more of the ID: %w",
		ref, len(prefixed), strings.Join(ids, ", "), errdefs.ErrInvalidArgument)
}

// getTask returns the task of container id, nil when it has none.
func getTask(ctx context.Context, c *conn, id string) (*task.Process, error) {
	resp, err := tasksapi.NewTasksClient(c.cc).Get(ctx, &tasksapi.GetRequest{ContainerID: id})
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("task of container %q: %w", id, err)
	}
	return resp.GetProcess(), nil
}

// listTasks returns the namespace's tasks by container ID.
func listTasks(ctx context.Context, c *conn) (map[string]*task.Process, error) {
	resp, err := tasksapi.NewTasksClient(c.cc).List(ctx, &tasksapi.ListTasksRequest{})
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	byID := make(map[string]*task.Process, len(resp.GetTasks()))
	for _, t := range resp.GetTasks() {
		byID[t.GetContainerID()] = t
	}
	return byID, nil
}

// isRunning reports whether a task's process is alive (paused counts).
func isRunning(t *task.Process) bool {
	if t == nil {
		return false
	}
	switch t.GetStatus() {
	case task.Status_RUNNING, task.Status_PAUSED, task.Status_PAUSING:
		return true
	}
	return false
}

// logPath is the file a container's log URI names, "" when it has none.
func logPath(rec *containersapi.Container) string {
	path, ok := strings.CutPrefix(rec.GetLabels()[labelLogURI], "file://")
	if !ok {
		return ""
	}
	return path
}

// removeStateDir removes the CLI's directory of a container, when its
// label names one that is the container's own.
func removeStateDir(rec *containersapi.Container) error {
	dir := rec.GetLabels()[labelStateDir]
	if dir == "" || filepath.Base(dir) != rec.GetID() || !filepath.IsAbs(dir) {
		return nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove the files of container %s: %w", describe(rec), err)
	}
	return nil
}
