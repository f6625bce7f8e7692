package main

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/berth-dev/berth/oci"
	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/errdefs"
	"github.com/spf13/cobra"
)

// defaultStopTimeout is how long stop waits after the stop signal, as docker.
const defaultStopTimeout = 10 * time.Second

// killWait bounds the wait for a process to die of SIGKILL.
const killWait = 10 * time.Second

func newStopCommand(a *app) *cobra.Command {
	var secs int
	cmd := &cobra.Command{
		Use:   "stop [-t SECONDS] CONTAINER...",
		Short: "Stop containers: the image's stop signal (default SIGTERM), then SIGKILL after the timeout",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if secs < 0 {
				return fmt.Errorf("negative --time %d: give the seconds to wait before SIGKILL", secs)
			}
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				return a.eachName(ctx, c, args, func(ctx context.Context, ref string) error {
					rec, err := findContainer(ctx, a, c, ref)
					if err != nil {
						return err
					}
					return stopContainer(ctx, c, rec, time.Duration(secs)*time.Second)
				})
			})
		},
	}
	cmd.Flags().IntVarP(&secs, "time", "t", int(defaultStopTimeout/time.Second), "seconds to wait for the container to exit before SIGKILL")
	return cmd
}

// stopContainer sends the container's stop signal and, if it has not
// exited after timeout, SIGKILL to all its processes. A container that is
// not running is left as it is.
func stopContainer(ctx context.Context, c *conn, rec *containersapi.Container, timeout time.Duration) error {
	t, err := getTask(ctx, c, rec.GetID())
	if err != nil || !isRunning(t) {
		return err
	}
	sig := syscall.SIGTERM
	if name := rec.GetLabels()[labelStopSignal]; name != "" {
		if sig, err = oci.ParseSignal(name); err != nil {
			return fmt.Errorf("container %s: stop signal label: %w", describe(rec), err)
		}
	}
	p := proc{c: c, id: rec.GetID()}
	if err := p.kill(ctx, sig, false); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("signal container %s: %w", describe(rec), err)
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	_, err = p.wait(wctx)
	cancel()
	if err == nil || ctx.Err() != nil {
		return err
	}
	return killAndWait(ctx, p, rec)
}

// killAndWait sends SIGKILL to every process of the container and waits
// for its init to exit.
func killAndWait(ctx context.Context, p proc, rec *containersapi.Container) error {
	if err := p.kill(ctx, syscall.SIGKILL, true); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("kill container %s: %w", describe(rec), err)
	}
	wctx, cancel := context.WithTimeout(ctx, killWait)
	defer cancel()
	if _, err := p.wait(wctx); err != nil {
		return fmt.Errorf("container %s did not exit after SIGKILL: %w", describe(rec), err)
	}
	return nil
}

func newKillCommand(a *app) *cobra.Command {
	var signal string
	cmd := &cobra.Command{
		Use:   "kill [-s SIGNAL] CONTAINER...",
		Short: "Send a signal (default SIGKILL) to running containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sig, err := oci.ParseSignal(signal)
			if err != nil {
				return err
			}
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				return a.eachName(ctx, c, args, func(ctx context.Context, ref string) error {
					rec, err := findContainer(ctx, a, c, ref)
					if err != nil {
						return err
					}
					return killContainer(ctx, c, rec, sig)
				})
			})
		},
	}
	cmd.Flags().StringVarP(&signal, "signal", "s", "KILL", "signal to send: a name (TERM, SIGHUP) or a number")
	return cmd
}

func killContainer(ctx context.Context, c *conn, rec *containersapi.Container, sig syscall.Signal) error {
	t, err := getTask(ctx, c, rec.GetID())
	if err != nil {
		return err
	}
	if !isRunning(t) {
		return fmt.Errorf("container %s is not running: %w", describe(rec), errdefs.ErrFailedPrecondition)
	}
	if err := (proc{c: c, id: rec.GetID()}).kill(ctx, sig, false); err != nil {
		return fmt.Errorf("signal container %s: %w", describe(rec), err)
	}
	return nil
}

func newRmCommand(a *app, o *containerOptions) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [-f] CONTAINER...",
		Aliases: []string{"remove"},
		Short:   "Remove containers: their task, record, snapshot, network and files",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				return a.eachName(ctx, c, args, func(ctx context.Context, ref string) error {
					rec, err := findContainer(ctx, a, c, ref)
					if err != nil {
						return err
					}
					return removeContainer(ctx, a, c, o, rec, force)
				})
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill a running container first")
	return cmd
}

// removeContainer removes a container and all it holds. A running one is
// killed first with force, and refused without.
func removeContainer(ctx context.Context, a *app, c *conn, o *containerOptions, rec *containersapi.Container, force bool) error {
	id := rec.GetID()
	t, err := getTask(ctx, c, id)
	if err != nil {
		return err
	}
	if isRunning(t) {
		if !force {
			return fmt.Errorf("container %s is running: stop it first (berth stop) or remove it with rm -f: %w",
				describe(rec), errdefs.ErrFailedPrecondition)
		}
		if err := killAndWait(ctx, proc{c: c, id: id}, rec); err != nil {
			return err
		}
	}
	if t != nil {
		if err := deleteTask(ctx, c, id); err != nil {
			return fmt.Errorf("delete the task of container %s: %w", describe(rec), err)
		}
	}
	return deleteContainer(ctx, a, c, o, rec)
}

// deleteContainer removes a container without a task: its network, its
// record, its snapshot and the CLI's files for it. Whatever is already
// gone is skipped, so that it finishes what an interrupted removal left. A
// network or files that cannot be removed are only warned about: the
// container is removed all the same.
func deleteContainer(ctx context.Context, a *app, c *conn, o *containerOptions, rec *containersapi.Container) error {
	if err := teardownNetwork(ctx, a, o, rec); err != nil {
		fmt.Fprintf(a.stderr, "berth: warning: %v\n", err)
	}
	_, err := containersapi.NewContainersClient(c.cc).Delete(ctx, &containersapi.DeleteContainerRequest{ID: rec.GetID()})
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete container %s: %w", describe(rec), err)
	}
	if err := removeStateDir(rec); err != nil {
		fmt.Fprintf(a.stderr, "berth: warning: %v\n", err)
	}
	if err := removeSnapshot(ctx, c, rec.GetSnapshotter(), rec.GetSnapshotKey()); err != nil {
		return fmt.Errorf("container %s: %w", describe(rec), err)
	}
	return nil
}

// deleteTask deletes a container's stopped task; none is not an error.
func deleteTask(ctx context.Context, c *conn, id string) error {
	_, err := tasksapi.NewTasksClient(c.cc).Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: id})
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}

// removeSnapshot removes a container's snapshot; none is not an error.
func removeSnapshot(ctx context.Context, c *conn, snapshotter, key string) error {
	if snapshotter == "" || key == "" {
		return nil
	}
	_, err := snapshotsapi.NewSnapshotsClient(c.cc).Remove(ctx, &snapshotsapi.RemoveSnapshotRequest{Snapshotter: snapshotter, Key: key})
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove snapshot %q of %s: %w", key, snapshotter, err)
	}
	return nil
}
