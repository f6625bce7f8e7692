package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/errdefs"
	"github.com/spf13/cobra"
)

type snapshotView struct {
	Key       string            `json:"key"`
	Parent    string            `json:"parent,omitempty"`
	Kind      string            `json:"kind"`
	CreatedAt time.Time         `json:"createdAt,omitzero"`
	UpdatedAt time.Time         `json:"updatedAt,omitzero"`
	Labels    map[string]string `json:"labels,omitempty"`
}

func newSnapshotView(info *snapshotsapi.Info) snapshotView {
	return snapshotView{
		Key: info.GetName(), Parent: info.GetParent(), Kind: kindName(info.GetKind()),
		CreatedAt: asTime(info.GetCreatedAt()), UpdatedAt: asTime(info.GetUpdatedAt()), Labels: info.GetLabels(),
	}
}

// kindName spells a kind as ctr does.
func kindName(k snapshotsapi.Kind) string {
	switch k {
	case snapshotsapi.Kind_VIEW:
		return "View"
	case snapshotsapi.Kind_ACTIVE:
		return "Active"
	case snapshotsapi.Kind_COMMITTED:
		return "Committed"
	}
	return "Unknown"
}

func newSnapshotsCommand(a *app) *cobra.Command {
	var snapshotter string
	cmd := &cobra.Command{
		Use:     "snapshots",
		Aliases: []string{"snapshot"},
		Short:   "Manage snapshots of a snapshotter",
	}
	cmd.PersistentFlags().StringVar(&snapshotter, "snapshotter", "overlayfs", "snapshotter to act on")
	cmd.AddCommand(
		newSnapshotListCommand(a, &snapshotter),
		newSnapshotTreeCommand(a, &snapshotter),
		newSnapshotRemoveCommand(a, &snapshotter),
		newSnapshotInfoCommand(a, &snapshotter),
		newSnapshotUsageCommand(a, &snapshotter),
	)
	return cmd
}

func newSnapshotListCommand(a *app, snapshotter *string) *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "List snapshots, optionally only those matching any of the filters",
		RunE: func(cmd *cobra.Command, filters []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				views, err := listSnapshots(ctx, c, *snapshotter, filters)
				if err != nil {
					return err
				}
				if quiet {
					return printNames(a.stdout, views, func(v snapshotView) string { return v.Key })
				}
				return a.out().print(views, func(w io.Writer) error {
					t := newTable("KEY", "PARENT", "KIND")
					for _, v := range views {
						t.add(v.Key, dash(v.Parent), v.Kind)
					}
					return t.write(w)
				})
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only keys")
	return cmd
}

func listSnapshots(ctx context.Context, c *conn, snapshotter string, filters []string) ([]snapshotView, error) {
	stream, err := snapshotsapi.NewSnapshotsClient(c.cc).List(ctx,
		&snapshotsapi.ListSnapshotsRequest{Snapshotter: snapshotter, Filters: filters})
	if err != nil {
		return nil, err
	}
	views := []snapshotView{}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("snapshotter %q: %w", snapshotter, err)
		}
		for _, info := range resp.GetInfo() {
			views = append(views, newSnapshotView(info))
		}
	}
	slices.SortFunc(views, func(x, y snapshotView) int { return strings.Compare(x.Key, y.Key) })
	return views, nil
}

// snapshotNode is a snapshot with the snapshots whose parent it is.
type snapshotNode struct {
	snapshotView
	Children []*snapshotNode `json:"children,omitempty"`
}

func newSnapshotTreeCommand(a *app, snapshotter *string) *cobra.Command {
	return &cobra.Command{
		Use:   "tree",
		Short: "Show snapshots as a tree of parents and children",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				views, err := listSnapshots(ctx, c, *snapshotter, nil)
				if err != nil {
					return err
				}
				roots := snapshotTree(views)
				return a.out().print(roots, func(w io.Writer) error {
					for _, r := range roots {
						if err := writeTree(w, r, 0); err != nil {
							return err
						}
					}
					return nil
				})
			})
		},
	}
}

// snapshotTree arranges views (sorted by key) under their parents; a
// snapshot whose parent is not listed is a root.
func snapshotTree(views []snapshotView) []*snapshotNode {
	nodes := make(map[string]*snapshotNode, len(views))
	for _, v := range views {
		nodes[v.Key] = &snapshotNode{snapshotView: v}
	}
	roots := []*snapshotNode{}
	for _, v := range views {
		n := nodes[v.Key]
		if p, ok := nodes[v.Parent]; ok && v.Parent != "" {
			p.Children = append(p.Children, n)
			continue
		}
		roots = append(roots, n)
	}
	return roots
}

// writeTree draws a node the way ctr does: children indented under their
// parent behind "\_".
func writeTree(w io.Writer, n *snapshotNode, level int) error {
	prefix := strings.Repeat("  ", level)
	if level > 0 {
		prefix += `\_`
	}
	if _, err := fmt.Fprintf(w, "%s %s\n", prefix, cellReplacer.Replace(n.Key)); err != nil {
		return err
	}
	for _, child := range n.Children {
		if err := writeTree(w, child, level+1); err != nil {
			return err
		}
	}
	return nil
}

func newSnapshotRemoveCommand(a *app, snapshotter *string) *cobra.Command {
	return &cobra.Command{
		Use:     "rm KEY...",
		Aliases: []string{"remove", "delete"},
		Short:   "Remove snapshots; a snapshot with children cannot be removed",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, keys []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				client := snapshotsapi.NewSnapshotsClient(c.cc)
				return a.eachName(ctx, c, keys, func(ctx context.Context, key string) error {
					_, err := client.Remove(ctx, &snapshotsapi.RemoveSnapshotRequest{Snapshotter: *snapshotter, Key: key})
					if err != nil {
						return fmt.Errorf("snapshot %q in %s: %w", key, *snapshotter, err)
					}
					return nil
				})
			})
		},
	}
}

func newSnapshotInfoCommand(a *app, snapshotter *string) *cobra.Command {
	return &cobra.Command{
		Use:   "info KEY",
		Short: "Show a snapshot",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				resp, err := snapshotsapi.NewSnapshotsClient(c.cc).Stat(ctx,
					&snapshotsapi.StatSnapshotRequest{Snapshotter: *snapshotter, Key: args[0]})
				if err != nil {
					return fmt.Errorf("snapshot %q in %s: %w", args[0], *snapshotter, err)
				}
				v := newSnapshotView(resp.GetInfo())
				return a.out().print(v, func(w io.Writer) error {
					s := &section{title: "Snapshot " + v.Key}
					s.add("Kind", v.Kind)
					s.add("Parent", dash(v.Parent))
					s.add("Created", formatTime(v.CreatedAt))
					s.add("Updated", formatTime(v.UpdatedAt))
					s.add("Labels", formatLabels(v.Labels))
					return writeSections(w, s)
				})
			})
		},
	}
}

type usageView struct {
	Key    string `json:"key"`
	Size   int64  `json:"size"`
	Inodes int64  `json:"inodes"`
}

func newSnapshotUsageCommand(a *app, snapshotter *string) *cobra.Command {
	var bytes bool
	cmd := &cobra.Command{
		Use:   "usage [KEY...]",
		Short: "Show the disk usage of snapshots, all of them by default",
		Long: `Show the disk usage of each snapshot: what it adds over its parent, in bytes
and inodes. A committed snapshot's usage is fixed; an active one's is measured
now.`,
		RunE: func(cmd *cobra.Command, keys []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				views, err := snapshotUsage(ctx, c, *snapshotter, keys)
				if err != nil {
					return err
				}
				return a.out().print(views, func(w io.Writer) error {
					t := newTable("KEY", "SIZE", "INODES")
					for _, v := range views {
						size := humanSize(v.Size)
						if bytes {
							size = strconv.FormatInt(v.Size, 10)
						}
						t.add(v.Key, size, strconv.FormatInt(v.Inodes, 10))
					}
					return t.write(w)
				})
			})
		},
	}
	cmd.Flags().BoolVarP(&bytes, "bytes", "b", false, "show sizes in bytes")
	return cmd
}

func snapshotUsage(ctx context.Context, c *conn, snapshotter string, keys []string) ([]usageView, error) {
	all := len(keys) == 0
	if all {
		listed, err := listSnapshots(ctx, c, snapshotter, nil)
		if err != nil {
			return nil, err
		}
		for _, v := range listed {
			keys = append(keys, v.Key)
		}
	}
	client := snapshotsapi.NewSnapshotsClient(c.cc)
	views := make([]usageView, 0, len(keys))
	for _, key := range keys {
		resp, err := client.Usage(ctx, &snapshotsapi.UsageRequest{Snapshotter: snapshotter, Key: key})
		if all && errdefs.IsNotFound(err) {
			continue // removed since it was listed
		}
		if err != nil {
			return nil, fmt.Errorf("usage of snapshot %q in %s: %w", key, snapshotter, err)
		}
		views = append(views, usageView{Key: key, Size: resp.GetSize(), Inodes: resp.GetInodes()})
	}
	return views, nil
}
