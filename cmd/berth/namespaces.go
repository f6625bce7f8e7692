package main

import (
	"context"
	"slices"
	"strings"

	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

type namespaceView struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

func newNamespacesCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "namespaces",
		Aliases: []string{"namespace", "ns"},
		Short:   "Manage namespaces",
	}
	cmd.AddCommand(
		newNamespaceListCommand(a),
		newNamespaceCreateCommand(a),
		newNamespaceRemoveCommand(a),
		newNamespaceLabelCommand(a),
	)
	return cmd
}

func newNamespaceListCommand(a *app) *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List namespaces",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				resp, err := namespacesapi.NewNamespacesClient(c.cc).List(ctx, &namespacesapi.ListNamespacesRequest{})
				if err != nil {
					return err
				}
				views := make([]namespaceView, 0, len(resp.GetNamespaces()))
				for _, ns := range resp.GetNamespaces() {
					views = append(views, namespaceView{Name: ns.GetName(), Labels: ns.GetLabels()})
				}
				slices.SortFunc(views, func(x, y namespaceView) int { return strings.Compare(x.Name, y.Name) })
				if quiet {
					return printNames(a.stdout, views, func(v namespaceView) string { return v.Name })
				}
				return a.out().print(views, namespaceTable(views).write)
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only names")
	return cmd
}

func namespaceTable(views []namespaceView) *table {
	t := newTable("NAME", "LABELS")
	for _, v := range views {
		t.add(v.Name, formatLabels(v.Labels))
	}
	return t
}

func newNamespaceCreateCommand(a *app) *cobra.Command {
	var labelArgs []string
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a namespace",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			labels, err := parseLabels(labelArgs)
			if err != nil {
				return err
			}
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				ns := &namespacesapi.Namespace{Name: args[0], Labels: labels}
				resp, err := namespacesapi.NewNamespacesClient(c.cc).Create(ctx,
					&namespacesapi.CreateNamespaceRequest{Namespace: ns})
				if err != nil {
					return err
				}
				return a.printNamespace(resp.GetNamespace())
			})
		},
	}
	cmd.Flags().StringArrayVar(&labelArgs, "label", nil, "label to set, as key=value (repeatable)")
	return cmd
}

func newNamespaceRemoveCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove", "delete"},
		Short:   "Remove empty namespaces",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				client := namespacesapi.NewNamespacesClient(c.cc)
				return a.eachName(ctx, c, args, func(ctx context.Context, name string) error {
					_, err := client.Delete(ctx, &namespacesapi.DeleteNamespaceRequest{Name: name})
					return err
				})
			})
		},
	}
}

func newNamespaceLabelCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "label NAME KEY=VALUE...",
		Short: "Set labels on a namespace; KEY= removes the label",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			labels, err := parseLabels(args[1:])
			if err != nil {
				return err
			}
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				ns, err := labelNamespace(ctx, namespacesapi.NewNamespacesClient(c.cc), args[0], labels)
				if err != nil {
					return err
				}
				return a.printNamespace(ns)
			})
		},
	}
}

// labelNamespace sets labels and returns the namespace as it now is.
// containerd 1.6 answers an update with an empty namespace, so ask again.
func labelNamespace(ctx context.Context, client namespacesapi.NamespacesClient, name string,
	labels map[string]string) (*namespacesapi.Namespace, error) {
	resp, err := client.Update(ctx, &namespacesapi.UpdateNamespaceRequest{
		Namespace:  &namespacesapi.Namespace{Name: name, Labels: labels},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: labelPaths(labels)},
	})
	if err != nil {
		return nil, err
	}
	if resp.GetNamespace().GetName() == name {
		return resp.GetNamespace(), nil
	}
	got, err := client.Get(ctx, &namespacesapi.GetNamespaceRequest{Name: name})
	if err != nil {
		return nil, err
	}
	return got.GetNamespace(), nil
}

// printNamespace shows a namespace just created or changed, as ls would.
func (a *app) printNamespace(ns *namespacesapi.Namespace) error {
	v := namespaceView{Name: ns.GetName(), Labels: ns.GetLabels()}
	return a.out().print(v, namespaceTable([]namespaceView{v}).write)
}
