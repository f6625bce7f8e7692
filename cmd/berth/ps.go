package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	"github.com/containerd/containerd/api/types/task"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
)

// containerView is one row of ps, and its JSON.
type containerView struct {
	ID      string            `json:"id"`
	Name    string            `json:"name,omitempty"`
	Image   string            `json:"image"`
	Command string            `json:"command"`
	Created time.Time         `json:"createdAt,omitzero"`
	Status  string            `json:"status"`
	Pid     uint32            `json:"pid,omitempty"`
	Exit    *uint32           `json:"exitStatus,omitempty"`
	Ports   []portView        `json:"ports,omitempty"`
	Runtime string            `json:"runtime"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// portView is a published port as the berth.dev/ports label holds it.
type portView struct {
	HostIP        string `json:"hostIP,omitempty"`
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"`
}

func (p portView) String() string {
	proto := p.Protocol
	if proto == "" {
		proto = "tcp"
	}
	host := p.HostIP
	if host == "" {
		host = "0.0.0.0"
	}
	return fmt.Sprintf("%s:%d->%d/%s", host, p.HostPort, p.ContainerPort, proto)
}

func newPsCommand(a *app) *cobra.Command {
	var all, quiet bool
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List containers: running ones, or all with -a",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				views, err := psViews(ctx, c, all)
				if err != nil {
					return err
				}
				if quiet {
					return printNames(a.stdout, views, func(v containerView) string { return shortID(v.ID) })
				}
				return a.out().print(orEmpty(views), psTable(views, time.Now()).write)
			})
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "list stopped and created containers too")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the containers' short IDs")
	return cmd
}

// psViews joins the container records with their tasks.
func psViews(ctx context.Context, c *conn, all bool) ([]containerView, error) {
	recs, err := listContainers(ctx, c)
	if err != nil {
		return nil, err
	}
	tasks, err := listTasks(ctx, c)
	if err != nil {
		return nil, err
	}
	views := make([]containerView, 0, len(recs))
	for _, rec := range recs {
		t := tasks[rec.GetID()]
		if !all && !isRunning(t) {
			continue
		}
		views = append(views, newContainerView(rec, t))
	}
	return views, nil
}

func newContainerView(rec *containersapi.Container, t *task.Process) containerView {
	v := containerView{
		ID: rec.GetID(), Name: containerName(rec), Image: rec.GetImage(),
		Command: specCommand(rec), Created: asTime(rec.GetCreatedAt()),
		Runtime: rec.GetRuntime().GetName(), Labels: rec.GetLabels(), Status: "created",
	}
	if ports := rec.GetLabels()[labelPorts]; ports != "" {
		_ = json.Unmarshal([]byte(ports), &v.Ports) // a bad label shows no ports
	}
	if t == nil {
		return v
	}
	v.Pid = t.GetPid()
	v.Status = strings.ToLower(t.GetStatus().String())
	if t.GetStatus() == task.Status_STOPPED {
		exit := t.GetExitStatus()
		v.Exit = &exit
	}
	return v
}

// specCommand is the command line of a container's spec, "" when the
// spec is not the runtime spec.
func specCommand(rec *containersapi.Container) string {
	var spec specs.Spec
	if err := json.Unmarshal(rec.GetSpec().GetValue(), &spec); err != nil || spec.Process == nil {
		return ""
	}
	return strings.Join(spec.Process.Args, " ")
}

// psTable shows containers as docker ps does.
func psTable(views []containerView, now time.Time) *table {
	t := newTable("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")
	for _, v := range views {
		ports := make([]string, len(v.Ports))
		for i, p := range v.Ports {
			ports[i] = p.String()
		}
		t.add(shortID(v.ID), dash(v.Image), strconv.Quote(truncate(v.Command, 20)), humanAge(now, v.Created)+" ago",
			statusText(v), dash(strings.Join(ports, ",")), dash(v.Name))
	}
	return t
}

func statusText(v containerView) string {
	switch {
	case v.Exit != nil:
		return fmt.Sprintf("Exited (%d)", *v.Exit)
	case v.Status == "running":
		return "Up"
	}
	return strings.ToUpper(v.Status[:1]) + v.Status[1:]
}

// truncate cuts s to n characters, marking the cut.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
