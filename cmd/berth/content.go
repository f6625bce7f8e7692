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

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

type contentView struct {
	Digest    string            `json:"digest"`
	Size      int64             `json:"size"`
	CreatedAt time.Time         `json:"createdAt,omitzero"`
	UpdatedAt time.Time         `json:"updatedAt,omitzero"`
	Labels    map[string]string `json:"labels,omitempty"`
}

func newContentView(info *contentapi.Info) contentView {
	return contentView{
		Digest:    info.GetDigest(),
		Size:      info.GetSize(),
		CreatedAt: asTime(info.GetCreatedAt()),
		UpdatedAt: asTime(info.GetUpdatedAt()),
		Labels:    info.GetLabels(),
	}
}

func contentTable(views []contentView, now time.Time) *table {
	t := newTable("DIGEST", "SIZE", "AGE", "LABELS")
	for _, v := range views {
		t.add(v.Digest, humanSize(v.Size), humanAge(now, v.CreatedAt), formatLabels(v.Labels))
	}
	return t
}

func newContentCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "content",
		Short: "Manage blobs in the content store",
	}
	cmd.AddCommand(
		newContentListCommand(a),
		newContentGetCommand(a),
		newContentIngestCommand(a),
		newContentRemoveCommand(a),
		newContentActiveCommand(a),
		newContentLabelCommand(a),
	)
	return cmd
}

func newContentListCommand(a *app) *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "List blobs, optionally only those matching any of the filters",
		RunE: func(cmd *cobra.Command, filters []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				views, err := listContent(ctx, c, filters)
				if err != nil {
					return err
				}
				if quiet {
					return printNames(a.stdout, views, func(v contentView) string { return v.Digest })
				}
				return a.out().print(views, contentTable(views, time.Now()).write)
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only digests")
	return cmd
}

func listContent(ctx context.Context, c *conn, filters []string) ([]contentView, error) {
	stream, err := contentapi.NewContentClient(c.cc).List(ctx, &contentapi.ListContentRequest{Filters: filters})
	if err != nil {
		return nil, err
	}
	views := []contentView{}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		for _, info := range resp.GetInfo() {
			views = append(views, newContentView(info))
		}
	}
	slices.SortFunc(views, func(x, y contentView) int { return strings.Compare(x.Digest, y.Digest) })
	return views, nil
}

func newContentGetCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "get DIGEST",
		Short: "Write a blob to standard output",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dgst, err := parseDigest(args[0])
			if err != nil {
				return err
			}
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				return readContent(ctx, c, dgst, a.stdout)
			})
		},
	}
}

// readContent copies the blob to w, checking the chunks arrive in order.
func readContent(ctx context.Context, c *conn, dgst digest.Digest, w io.Writer) error {
	stream, err := contentapi.NewContentClient(c.cc).Read(ctx, &contentapi.ReadContentRequest{Digest: dgst.String()})
	if err != nil {
		return err
	}
	var offset int64
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if resp.GetOffset() != offset {
			return fmt.Errorf("read %s: daemon sent offset %d, want %d", dgst, resp.GetOffset(), offset)
		}
		n, err := w.Write(resp.GetData())
		if err != nil {
			return err
		}
		offset += int64(n)
	}
}

func newContentRemoveCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "rm DIGEST...",
		Aliases: []string{"remove", "delete"},
		Short:   "Remove blobs from the namespace",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				client := contentapi.NewContentClient(c.cc)
				return a.eachName(ctx, c, args, func(ctx context.Context, arg string) error {
					dgst, err := parseDigest(arg)
					if err != nil {
						return err
					}
					_, err = client.Delete(ctx, &contentapi.DeleteContentRequest{Digest: dgst.String()})
					return err
				})
			})
		},
	}
}

func newContentLabelCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "label DIGEST KEY=VALUE...",
		Short: "Set labels on a blob; KEY= removes the label",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			dgst, err := parseDigest(args[0])
			if err != nil {
				return err
			}
			labels, err := parseLabels(args[1:])
			if err != nil {
				return err
			}
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				resp, err := contentapi.NewContentClient(c.cc).Update(ctx, &contentapi.UpdateRequest{
					Info:       &contentapi.Info{Digest: dgst.String(), Labels: labels},
					UpdateMask: &fieldmaskpb.FieldMask{Paths: labelPaths(labels)},
				})
				if err != nil {
					return err
				}
				v := newContentView(resp.GetInfo())
				return a.out().print(v, contentTable([]contentView{v}, time.Now()).write)
			})
		},
	}
}

// activeView is an ingest in progress: how far it got and what it expects.
type activeView struct {
	Ref       string    `json:"ref"`
	Offset    int64     `json:"offset"`
	Total     int64     `json:"total,omitempty"`
	Expected  string    `json:"expected,omitempty"`
	StartedAt time.Time `json:"startedAt,omitzero"`
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
}

func newContentActiveCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "active [FILTER...]",
		Short: "List ingests in progress, which `content ingest` can resume",
		RunE: func(cmd *cobra.Command, filters []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				resp, err := contentapi.NewContentClient(c.cc).ListStatuses(ctx,
					&contentapi.ListStatusesRequest{Filters: filters})
				if err != nil {
					return err
				}
				views := make([]activeView, 0, len(resp.GetStatuses()))
				for _, st := range resp.GetStatuses() {
					views = append(views, activeView{
						Ref: st.GetRef(), Offset: st.GetOffset(), Total: st.GetTotal(), Expected: st.GetExpected(),
						StartedAt: asTime(st.GetStartedAt()), UpdatedAt: asTime(st.GetUpdatedAt()),
					})
				}
				slices.SortFunc(views, func(x, y activeView) int { return strings.Compare(x.Ref, y.Ref) })
				return a.out().print(views, activeTable(views, time.Now()).write)
			})
		},
	}
}

func activeTable(views []activeView, now time.Time) *table {
	t := newTable("REF", "OFFSET", "TOTAL", "STARTED", "UPDATED")
	for _, v := range views {
		total := "-"
		if v.Total > 0 {
			total = strconv.FormatInt(v.Total, 10)
		}
		t.add(v.Ref, strconv.FormatInt(v.Offset, 10), total, humanAge(now, v.StartedAt), humanAge(now, v.UpdatedAt))
	}
	return t
}

func parseDigest(s string) (digest.Digest, error) {
	dgst, err := digest.Parse(s)
	if err != nil {
		return "", fmt.Errorf("invalid digest %q: %w", s, err)
	}
	return dgst, nil
}
