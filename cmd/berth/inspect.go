package main

import (
	"context"
	"encoding/json"
	"time"

	"github.com/containerd/containerd/api/types/task"
	"github.com/spf13/cobra"
)

// containerInspectView is what inspect prints of a container, always as
// JSON, as docker and nerdctl do.
type containerInspectView struct {
	ID          string            `json:"id"`
	Name        string            `json:"name,omitempty"`
	Image       string            `json:"image"`
	Runtime     runtimeView       `json:"runtime"`
	Snapshotter string            `json:"snapshotter,omitempty"`
	SnapshotKey string            `json:"snapshotKey,omitempty"`
	CreatedAt   time.Time         `json:"createdAt,omitzero"`
	UpdatedAt   time.Time         `json:"updatedAt,omitzero"`
	Labels      map[string]string `json:"labels,omitempty"`
	Spec        json.RawMessage   `json:"spec,omitempty"`
	Task        *taskView         `json:"task,omitempty"`
	// Network is the CNI result of a bridge container while it has one.
	Network any    `json:"network,omitempty"`
	LogPath string `json:"logPath,omitempty"`
}

type runtimeView struct {
	Name        string `json:"name"`
	OptionsType string `json:"optionsType,omitempty"`
}

// taskView is a container's task; ExitStatus and ExitedAt are set once
// it stopped.
type taskView struct {
	Status     string    `json:"status"`
	Pid        uint32    `json:"pid"`
	ExitStatus *uint32   `json:"exitStatus,omitempty"`
	ExitedAt   time.Time `json:"exitedAt,omitzero"`
}

func newContainerInspectCommand(a *app, o *containerOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect CONTAINER...",
		Short: "Show containers as JSON: record, spec, task, network and log file",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				views := []containerInspectView{}
				failed := false
				for _, ref := range args {
					v, err := inspectContainer(ctx, a, c, o, ref)
					if err != nil {
						a.printError(c.explain(err))
						failed = true
						continue
					}
					views = append(views, v)
				}
				if err := writeJSON(a.stdout, views); err != nil {
					return err
				}
				if failed {
					return errReported
				}
				return nil
			})
		},
	}
}

func inspectContainer(ctx context.Context, a *app, c *conn, o *containerOptions, ref string) (containerInspectView, error) {
	rec, err := findContainer(ctx, a, c, ref)
	if err != nil {
		return containerInspectView{}, err
	}
	v := containerInspectView{
		ID: rec.GetID(), Name: containerName(rec), Image: rec.GetImage(),
		Runtime:     runtimeView{Name: rec.GetRuntime().GetName(), OptionsType: rec.GetRuntime().GetOptions().GetTypeUrl()},
		Snapshotter: rec.GetSnapshotter(), SnapshotKey: rec.GetSnapshotKey(),
		CreatedAt: asTime(rec.GetCreatedAt()), UpdatedAt: asTime(rec.GetUpdatedAt()),
		Labels: rec.GetLabels(), LogPath: logPath(rec),
	}
	if json.Valid(rec.GetSpec().GetValue()) {
		v.Spec = rec.GetSpec().GetValue()
	}
	t, err := getTask(ctx, c, rec.GetID())
	if err != nil {
		return v, err
	}
	v.Task = newTaskView(t)
	if v.Network, err = networkStatus(ctx, a, o, rec); err != nil {
		return v, err
	}
	return v, nil
}

func newTaskView(t *task.Process) *taskView {
	if t == nil {
		return nil
	}
	v := &taskView{Status: t.GetStatus().String(), Pid: t.GetPid()}
	if t.GetStatus() == task.Status_STOPPED {
		exit := t.GetExitStatus()
		v.ExitStatus, v.ExitedAt = &exit, asTime(t.GetExitedAt())
	}
	return v
}
