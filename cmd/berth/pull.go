package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	streamingapi "github.com/containerd/containerd/api/services/streaming/v1"
	transferapi "github.com/containerd/containerd/api/services/transfer/v1"
	"github.com/containerd/containerd/api/types"
	transfertypes "github.com/containerd/containerd/api/types/transfer"
	"github.com/containerd/platforms"
	"github.com/containerd/typeurl/v2"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/anypb"
)

type pullOptions struct {
	platforms    []string
	allPlatforms bool
	hostsDir     string
	snapshotter  string
	plainHTTP    bool
}

func newPullCommand(a *app) *cobra.Command {
	var o pullOptions
	cmd := &cobra.Command{
		Use:   "pull REF",
		Short: "Pull an image from a registry and unpack it, in berthd",
		Long: `Pull an image through berthd (the Transfer service): berthd resolves REF through
the hosts.toml files of the hosts directory, fetches the layers in parallel and
unpacks each one as it arrives. Progress is live on a terminal, one line per
change otherwise.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				return runPull(ctx, a, c, args[0], o)
			})
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.platforms, "platform", nil, "platforms to pull, e.g. linux/amd64,linux/arm64 (default: berthd's)")
	f.BoolVar(&o.allPlatforms, "all-platforms", false, "fetch every platform of an index; unpack berthd's own")
	f.StringVar(&o.hostsDir, "hosts-dir", "", "certs.d directory of hosts.toml files (default: berthd's config_path)")
	f.StringVar(&o.snapshotter, "snapshotter", "overlayfs", "snapshotter to unpack into")
	f.BoolVar(&o.plainHTTP, "plain-http", false, "use plain HTTP for registries without a hosts.toml")
	return cmd
}

func runPull(ctx context.Context, a *app, c *conn, ref string, o pullOptions) error {
	store := &transfertypes.ImageStore{
		AllMetadata: o.allPlatforms,
		Unpacks:     []*transfertypes.UnpackConfiguration{{Snapshotter: o.snapshotter}},
	}
	for _, p := range o.platforms {
		spec, err := platforms.Parse(p)
		if err != nil {
			return fmt.Errorf("--platform %q: %w", p, err)
		}
		store.Platforms = append(store.Platforms, &types.Platform{OS: spec.OS, Architecture: spec.Architecture, Variant: spec.Variant})
	}
	resolver := &transfertypes.RegistryResolver{HostDir: o.hostsDir}
	if o.plainHTTP {
		resolver.DefaultScheme = "http"
	}
	src, err := anypb.New(&transfertypes.OCIRegistry{Reference: ref, Resolver: resolver})
	if err != nil {
		return err
	}
	dst, err := anypb.New(store)
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

func streamID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "pull-" + hex.EncodeToString(b)
}

// openProgress opens the named progress stream and feeds what arrives to
// display until the stream ends; the returned channel closes then.
func openProgress(ctx context.Context, c *conn, id string, d *pullDisplay) (<-chan struct{}, error) {
	st, err := streamingapi.NewStreamingClient(c.cc).Stream(ctx)
	if err != nil {
		return nil, err
	}
	init, err := anypb.New(&streamingapi.StreamInit{ID: id})
	if err != nil {
		return nil, err
	}
	if err := st.Send(init); err != nil {
		return nil, err
	}
	if _, err := st.Recv(); err != nil { // the daemon's acknowledgement
		return nil, fmt.Errorf("open progress stream: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer d.finish()
		for {
			msg, err := st.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) && ctx.Err() == nil {
					fmt.Fprintf(os.Stderr, "berth: progress: %v\n", err)
				}
				return
			}
			v, err := typeurl.UnmarshalAny(msg)
			if p, ok := v.(*transfertypes.Progress); ok && err == nil {
				d.update(p)
			}
		}
	}()
	return done, nil
}

// pullDisplay shows pull progress: a live table redrawn in place on a
// terminal, one line per state change otherwise.
type pullDisplay struct {
	w     io.Writer
	tty   bool
	order []string
	rows  map[string]*transfertypes.Progress
	drawn int
}

func newPullDisplay(w io.Writer) *pullDisplay {
	d := &pullDisplay{w: w, rows: map[string]*transfertypes.Progress{}}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			d.tty = true
		}
	}
	return d
}

func (d *pullDisplay) update(p *transfertypes.Progress) {
	if !strings.Contains(p.Name, " sha256:") { // an overall event, not a blob
		fmt.Fprintf(d.w, "%s %s\n", p.Event, p.Name)
		d.drawn = 0
		return
	}
	prev, seen := d.rows[p.Name]
	if !seen {
		d.order = append(d.order, p.Name)
	}
	d.rows[p.Name] = p
	if d.tty {
		d.redraw()
		return
	}
	if !seen || prev.Event != p.Event {
		fmt.Fprintln(d.w, d.line(p))
	}
}

func (d *pullDisplay) redraw() {
	if d.drawn > 0 {
		fmt.Fprintf(d.w, "\033[%dA", d.drawn)
	}
	for _, name := range d.order {
		fmt.Fprintf(d.w, "\033[2K%s\n", d.line(d.rows[name]))
	}
	d.drawn = len(d.order)
}

func (d *pullDisplay) line(p *transfertypes.Progress) string {
	kind, dgst, _ := strings.Cut(p.Name, " ")
	short := strings.TrimPrefix(dgst, "sha256:")
	if len(short) > 12 {
		short = short[:12]
	}
	return fmt.Sprintf("%-8s %s  %-11s %s / %s", kind, short, p.Event, humanSize(p.Progress), humanSize(p.Total))
}

func (d *pullDisplay) finish() {}
