// Package events defines berth's event model, the same as containerd's: an
// Envelope carries a topic ("/namespaces/create", "/tasks/exit"...), the
// namespace it happened in, and the event itself as a typeurl Any whose type
// URL is the protobuf full name ("containerd.events.NamespaceCreate").
//
// Subsystems publish through a Publisher taken from the exchange; the
// events gRPC service and shims (over ttrpc) Forward envelopes made
// elsewhere; subscribers get a channel of the envelopes that match their
// filters until their context is cancelled.
package events

import (
	"context"
	"time"

	"github.com/containerd/typeurl/v2"
)

// Event is any message that can be published.
type Event interface{}

// Envelope is one published event.
type Envelope struct {
	Timestamp time.Time
	Namespace string
	Topic     string
	Event     typeurl.Any
}

// Field exposes an envelope to filters: "topic", "namespace", and
// "event.<field>" when the event has fieldpath support.
func (e *Envelope) Field(fieldpath []string) (string, bool) {
	if len(fieldpath) == 0 {
		return "", false
	}
	switch fieldpath[0] {
	case "topic":
		return e.Topic, len(e.Topic) > 0
	case "namespace":
		return e.Namespace, len(e.Namespace) > 0
	case "event":
		if e.Event == nil {
			return "", false
		}
		decoded, err := typeurl.UnmarshalAny(e.Event)
		if err != nil {
			return "", false
		}
		adaptor, ok := decoded.(interface {
			Field([]string) (string, bool)
		})
		if !ok {
			return "", false
		}
		return adaptor.Field(fieldpath[1:])
	}
	return "", false
}

// Publisher publishes an event on a topic, in the namespace of ctx.
type Publisher interface {
	Publish(ctx context.Context, topic string, event Event) error
}

// Forwarder passes on an envelope made elsewhere (a shim, a client).
type Forwarder interface {
	Forward(ctx context.Context, envelope *Envelope) error
}

// Subscriber delivers the envelopes matching any of filters until ctx ends;
// the error channel then receives the reason and both channels close.
type Subscriber interface {
	Subscribe(ctx context.Context, filters ...string) (ch <-chan *Envelope, errs <-chan error)
}
