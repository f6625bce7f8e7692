package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	// The event protos register their types, so typeurl can decode them.
	_ "github.com/containerd/containerd/api/events"
	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/typeurl/v2"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// eventView is one event; --format json prints one per line.
type eventView struct {
	Timestamp time.Time       `json:"timestamp"`
	Namespace string          `json:"namespace"`
	Topic     string          `json:"topic"`
	Event     json.RawMessage `json:"event"`
}

func newEventsCommand(a *app) *cobra.Command {
	var filters []string
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Print the daemon's events as they happen, until interrupted",
		Long: `Print one line per event: time, namespace, topic and the event as JSON;
with --format json each line is one JSON object. Events of every namespace are
shown unless filters such as 'topic~="^/namespaces/"' or 'namespace==default'
select some; an event is shown when it matches any filter. Interrupting the
command or reaching --timeout ends the watch without an error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				return a.watchEvents(ctx, c, filters)
			})
		},
	}
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "event filter (repeatable)")
	return cmd
}

// watchEvents prints events until the stream ends or ctx is done; an
// interrupt or the --timeout ending the watch is not an error.
func (a *app) watchEvents(ctx context.Context, c *conn, filters []string) error {
	stream, err := eventsapi.NewEventsClient(c.cc).Subscribe(ctx, &eventsapi.SubscribeRequest{Filters: filters})
	if err != nil {
		return err
	}
	for {
		env, err := stream.Recv()
		if errors.Is(err, io.EOF) || (err != nil && ctx.Err() != nil) {
			return nil
		}
		if err != nil {
			return err
		}
		line, err := formatEvent(env, a.opts.format)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintln(a.stdout, line); err != nil {
			return err
		}
	}
}

func formatEvent(env *types.Envelope, format string) (string, error) {
	v := eventView{
		Timestamp: asTime(env.GetTimestamp()),
		Namespace: env.GetNamespace(),
		Topic:     env.GetTopic(),
		Event:     decodeEvent(env.GetEvent()),
	}
	if format == formatJSON {
		b, err := json.Marshal(v)
		return string(b), err
	}
	return fmt.Sprintf("%s %s %s %s",
		v.Timestamp.Format(time.RFC3339Nano), dash(v.Namespace), dash(v.Topic), v.Event), nil
}

// decodeEvent renders an event payload as compact JSON. A type this client
// does not know is shown by its type URL and raw bytes (base64).
func decodeEvent(a *anypb.Any) json.RawMessage {
	if a == nil {
		return json.RawMessage("null")
	}
	if v, err := typeurl.UnmarshalAny(a); err == nil {
		if b, err := marshalEvent(v); err == nil {
			return b
		}
	}
	b, _ := json.Marshal(struct {
		TypeURL string `json:"typeUrl"`
		Value   []byte `json:"value"`
	}{a.GetTypeUrl(), a.GetValue()})
	return b
}

func marshalEvent(v any) (json.RawMessage, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return json.Marshal(v)
	}
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	// protojson varies its whitespace on purpose; compact it for stable lines.
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
