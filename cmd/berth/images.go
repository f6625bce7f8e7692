package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/spf13/cobra"
)

type imageView struct {
	Name      string `json:"name"`
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	// ImageSize is the config and layers of the manifest for this host's
	// platform; 0 when the content store lacks them.
	ImageSize int64             `json:"imageSize,omitempty"`
	Platforms []string          `json:"platforms"`
	CreatedAt time.Time         `json:"createdAt,omitzero"`
	UpdatedAt time.Time         `json:"updatedAt,omitzero"`
	Labels    map[string]string `json:"labels,omitempty"`
}

func newImagesCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "images",
		Aliases: []string{"image", "i"},
		Short:   "Manage images",
	}
	cmd.AddCommand(
		newImageListCommand(a),
		newImageRemoveCommand(a),
		newImageInspectCommand(a),
		newTagCommand(a),
		newImportCommand(a),
		newExportCommand(a),
	)
	return cmd
}

func newImageListCommand(a *app) *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "List images, optionally only those matching any of the filters",
		RunE: func(cmd *cobra.Command, filters []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				views, err := listImages(ctx, c, filters, !quiet)
				if err != nil {
					return err
				}
				if quiet {
					return printNames(a.stdout, views, func(v imageView) string { return v.Name })
				}
				return a.out().print(views, imageTable(views, time.Now()).write)
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only names")
	return cmd
}

// listImages lists the image records; with summarize, it reads their
// manifests for sizes and platforms too.
func listImages(ctx context.Context, c *conn, filters []string, summarize bool) ([]imageView, error) {
	resp, err := imagesapi.NewImagesClient(c.cc).List(ctx, &imagesapi.ListImagesRequest{Filters: filters})
	if err != nil {
		return nil, err
	}
	views := make([]imageView, 0, len(resp.GetImages()))
	for _, img := range resp.GetImages() {
		target := img.GetTarget()
		var size int64
		var platforms []string
		if summarize {
			if size, platforms, err = imageSummary(ctx, c, fromProto(target)); err != nil {
				return nil, fmt.Errorf("image %q: %w", img.GetName(), err)
			}
		}
		views = append(views, imageView{
			Name:      img.GetName(),
			MediaType: target.GetMediaType(),
			Digest:    target.GetDigest(),
			Size:      target.GetSize(),
			ImageSize: size,
			Platforms: orEmpty(platforms),
			CreatedAt: asTime(img.GetCreatedAt()),
			UpdatedAt: asTime(img.GetUpdatedAt()),
			Labels:    img.GetLabels(),
		})
	}
	slices.SortFunc(views, func(x, y imageView) int { return strings.Compare(x.Name, y.Name) })
	return views, nil
}

// imageTable shows the image records with, like ctr, the size and the
// platforms read from their manifests.
func imageTable(views []imageView, now time.Time) *table {
	t := newTable("NAME", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "AGE", "LABELS")
	for _, v := range views {
		size := "-"
		if v.ImageSize > 0 {
			size = humanSize(v.ImageSize)
		}
		t.add(v.Name, dash(v.MediaType), dash(v.Digest), size, dash(strings.Join(v.Platforms, ",")),
			humanAge(now, v.CreatedAt), formatLabels(v.Labels))
	}
	return t
}

func newImageRemoveCommand(a *app) *cobra.Command {
	var sync bool
	cmd := &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove", "delete"},
		Short:   "Remove images",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				client := imagesapi.NewImagesClient(c.cc)
				return a.eachName(ctx, c, args, func(ctx context.Context, name string) error {
					_, err := client.Delete(ctx, &imagesapi.DeleteImageRequest{Name: name, Sync: sync})
					return err
				})
			})
		},
	}
	cmd.Flags().BoolVar(&sync, "sync", false, "wait until the daemon has collected the image's unused content")
	return cmd
}
