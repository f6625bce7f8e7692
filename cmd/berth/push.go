package main

import (
	"context"

	transferapi "github.com/containerd/containerd/api/services/transfer/v1"
	transfertypes "github.com/containerd/containerd/api/types/transfer"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/anypb"
)

func newPushCommand(a *app) *cobra.Command {
	var hostsDir string
	var plainHTTP bool
	cmd := &cobra.Command{
		Use:   "push REF [LOCAL]",
		Short: "Push an image to a registry, from berthd",
		Long: `Push image LOCAL (default REF) of the namespace to REF through berthd (the
Transfer service): every blob under the image, children first, then the
manifest under REF's tag. Blobs the registry has are not sent again.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			local := args[0]
			if len(args) == 2 {
				local = args[1]
			}
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				return runPush(ctx, a, c, args[0], local, hostsDir, plainHTTP)
			})
		},
	}
	cmd.Flags().StringVar(&hostsDir, "hosts-dir", "", "certs.d directory of hosts.toml files (default: berthd's config_path)")
	cmd.Flags().BoolVar(&plainHTTP, "plain-http", false, "use plain HTTP for registries without a hosts.toml")
	return cmd
}

func runPush(ctx context.Context, a *app, c *conn, ref, local, hostsDir string, plainHTTP bool) error {
	resolver := &transfertypes.RegistryResolver{HostDir: hostsDir}
	if plainHTTP {
		resolver.DefaultScheme = "http"
	}
	src, err := anypb.New(&transfertypes.ImageStore{Name: local})
	if err != nil {
		return err
	}
	dst, err := anypb.New(&transfertypes.OCIRegistry{Reference: ref, Resolver: resolver})
	if err != nil {
		return err
	}
	id := streamID()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	shown, err := openProgress(ctx, c, id, newPullDisplay(a.stdout))
	if err != nil {
		return err
	}
	_, err = transferapi.NewTransferClient(c.cc).Transfer(ctx, &transferapi.TransferRequest{
		Source: src, Destination: dst, Options: &transferapi.TransferOptions{ProgressStream: id},
	})
	cancel()
	<-shown
	return err
}
