package main

import (
	"context"
	"fmt"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/errdefs"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// newTagCommand returns `tag`, which both the root and `images` carry.
func newTagCommand(a *app) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "tag SOURCE TARGET...",
		Short: "Name an image's target under more names",
		Long: `Create an image record for each TARGET pointing at what SOURCE points at, with
SOURCE's labels. An existing TARGET is an error unless --force, which points it
at SOURCE's target in place: the record is never absent, so garbage collection
cannot take its content in between.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				client := imagesapi.NewImagesClient(c.cc)
				src, err := client.Get(ctx, &imagesapi.GetImageRequest{Name: args[0]})
				if err != nil {
					return err
				}
				return a.eachName(ctx, c, args[1:], func(ctx context.Context, name string) error {
					return tagImage(ctx, client, src.GetImage(), name, force)
				})
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "overwrite TARGET when it exists")
	return cmd
}

func tagImage(ctx context.Context, client imagesapi.ImagesClient, src *imagesapi.Image, name string, force bool) error {
	img := &imagesapi.Image{Name: name, Target: src.GetTarget(), Labels: src.GetLabels()}
	_, err := client.Create(ctx, &imagesapi.CreateImageRequest{Image: img})
	if !errdefs.IsAlreadyExists(err) {
		return err
	}
	if !force {
		return fmt.Errorf("%w (use --force to point it at %s)", err, src.GetName())
	}
	_, err = client.Update(ctx, &imagesapi.UpdateImageRequest{
		Image: img, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"target", "labels"}},
	})
	return err
}
