package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

func newStartCommand(a *app, o *containerOptions) *cobra.Command {
	var attached bool
	cmd := &cobra.Command{
		Use:   "start [-a] CONTAINER...",
		Short: "Start stopped containers again, from their records",
		Long: `Start a new task for each container that has stopped (or was only created),
from the same container record: the same spec and root filesystem, so files
the container wrote are still there. Its output goes to its log file
(berth logs), or with -a to the terminal, berth exiting with its status.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if attached {
				if len(args) != 1 {
					return fmt.Errorf("start -a attaches to one container, not %d", len(args))
				}
				ctx = context.WithoutCancel(ctx) // signals go to the container
			}
			return a.run(ctx, func(ctx context.Context, c *conn) error {
				if attached {
					return startAttached(ctx, a, c, args[0])
				}
				return a.eachName(ctx, c, args, func(ctx context.Context, ref string) error {
					return startDetached(ctx, a, c, o, ref)
				})
			})
		},
	}
	cmd.Flags().BoolVarP(&attached, "attach", "a", false, "copy the container's output to the terminal and exit with its status")
	return cmd
}

func startDetached(ctx context.Context, a *app, c *conn, o *containerOptions, ref string) error {
	rec, err := findContainer(ctx, a, c, ref)
	if err != nil {
		return err
	}
	running, err := clearTask(ctx, c, rec)
	if err != nil || running {
		return err
	}
	uri, err := ensureLogURI(ctx, c, o, a.opts.namespace, rec)
	if err != nil {
		return err
	}
	spec, err := specOf(rec)
	if err != nil {
		return err
	}
	tio := taskIO{stdout: uri, stderr: uri, terminal: spec.Process.Terminal}
	if err := createTask(ctx, c, rec, tio); err != nil {
		return err
	}
	return startOrDelete(ctx, c, rec)
}

func startAttached(ctx context.Context, a *app, c *conn, ref string) error {
	rec, err := findContainer(ctx, a, c, ref)
	if err != nil {
		return err
	}
	running, err := clearTask(ctx, c, rec)
	if err != nil {
		return err
	}
	if running {
		return fmt.Errorf("container %s is running already: %w", describe(rec), errdefs.ErrFailedPrecondition)
	}
	spec, err := specOf(rec)
	if err != nil {
		return err
	}
	at, err := newAttachment(ctx, rec.GetID(), false, spec.Process.Terminal)
	if err != nil {
		return err
	}
	defer at.close()
	if err := createTask(ctx, c, rec, at.taskIO()); err != nil {
		return err
	}
	status, err := attach(ctx, a, proc{c: c, id: rec.GetID()}, at)
	var notStarted *startFailure
	if errors.As(err, &notStarted) {
		_ = deleteTask(context.WithoutCancel(ctx), c, rec.GetID())
	}
	if err != nil {
		return fmt.Errorf("container %s: %w", describe(rec), err)
	}
	return exitResult(status)
}

// clearTask deletes the stopped task of a container about to start again.
// It reports whether the container is running, and then leaves it alone.
func clearTask(ctx context.Context, c *conn, rec *containersapi.Container) (bool, error) {
	t, err := getTask(ctx, c, rec.GetID())
	if err != nil || t == nil {
		return false, err
	}
	if isRunning(t) {
		return true, nil
	}
	if err := deleteTask(ctx, c, rec.GetID()); err != nil {
		return false, fmt.Errorf("delete the old task of container %s: %w", describe(rec), err)
	}
	return false, nil
}

// ensureLogURI returns the container's log URI, giving it one (in the data
// root) if it has none: it ran in the foreground, or ctr made it.
func ensureLogURI(ctx context.Context, c *conn, o *containerOptions, ns string, rec *containersapi.Container) (string, error) {
	if uri := rec.GetLabels()[labelLogURI]; uri != "" {
		return uri, nil
	}
	dir := rec.GetLabels()[labelStateDir]
	if dir == "" {
		var err error
		if dir, err = o.containerDir(ns, rec.GetID()); err != nil {
			return "", err
		}
	}
	lbls := map[string]string{labelLogURI: "file://" + filepath.Join(dir, rec.GetID()+".log"), labelStateDir: dir}
	_, err := containersapi.NewContainersClient(c.cc).Update(ctx, &containersapi.UpdateContainerRequest{
		Container:  &containersapi.Container{ID: rec.GetID(), Labels: lbls},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: labelPaths(lbls)},
	})
	if err != nil {
		return "", fmt.Errorf("label container %s with its log file: %w", describe(rec), err)
	}
	return lbls[labelLogURI], nil
}

// specOf decodes a container's runtime spec.
func specOf(rec *containersapi.Container) (*specs.Spec, error) {
	var spec specs.Spec
	if err := json.Unmarshal(rec.GetSpec().GetValue(), &spec); err != nil {
		return nil, fmt.Errorf("container %s: spec of type %q: %v: %w", describe(rec), rec.GetSpec().GetTypeUrl(), err, errdefs.ErrInvalidArgument)
	}
	if spec.Process == nil {
		return nil, fmt.Errorf("container %s has no process in its spec: %w", describe(rec), errdefs.ErrInvalidArgument)
	}
	return &spec, nil
}

// taskIO is where a new task's streams go: FIFO paths or file:// URIs.
type taskIO struct {
	stdin, stdout, stderr string
	terminal              bool
}

func (at *attachment) taskIO() taskIO {
	return taskIO{stdin: at.stdin, stdout: at.stdout, stderr: at.stderr, terminal: at.tty}
}

// createTask creates the task of a container on its snapshot's mounts.
func createTask(ctx context.Context, c *conn, rec *containersapi.Container, tio taskIO) error {
	var rootfs []*types.Mount
	if rec.GetSnapshotKey() != "" {
		resp, err := snapshotsapi.NewSnapshotsClient(c.cc).Mounts(ctx, &snapshotsapi.MountsRequest{
			Snapshotter: rec.GetSnapshotter(), Key: rec.GetSnapshotKey(),
		})
		if err != nil {
			return fmt.Errorf("mounts of the snapshot %q of container %s: %w", rec.GetSnapshotKey(), describe(rec), err)
		}
		rootfs = resp.GetMounts()
	}
	_, err := tasksapi.NewTasksClient(c.cc).Create(ctx, &tasksapi.CreateTaskRequest{
		ContainerID: rec.GetID(), Rootfs: rootfs, Terminal: tio.terminal,
		Stdin: tio.stdin, Stdout: tio.stdout, Stderr: tio.stderr,
	})
	if err != nil {
		return fmt.Errorf("create the task of container %s: %w", describe(rec), err)
	}
	return nil
}

// startOrDelete starts a created task, deleting it when it cannot start
// so that the container can be started again.
func startOrDelete(ctx context.Context, c *conn, rec *containersapi.Container) error {
	err := (proc{c: c, id: rec.GetID()}).start(ctx)
	if err == nil {
		return nil
	}
	err = fmt.Errorf("start container %s: %w", describe(rec), err)
	if derr := deleteTask(context.WithoutCancel(ctx), c, rec.GetID()); derr != nil {
		return errors.Join(err, fmt.Errorf("delete its task: %w", derr))
	}
	return err
}
