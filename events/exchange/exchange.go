// Package exchange is berth's in-process event bus. Subsystems Publish
// events, the events service and shims Forward envelopes made elsewhere, and
// subscribers receive, in publish order, the envelopes matching their
// filters.
//
// Delivery never waits for a subscriber: each one has a queue of QueueSize
// envelopes, and a subscriber that lets it fill is dropped (see Subscribe)
// rather than slowing publishers or the other subscribers.
package exchange

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/events"
	"github.com/berth-dev/berth/identifiers"
	"github.com/berth-dev/berth/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"

	// Link containerd's event types so that event.<field> filters can decode
	// every containerd event, whichever component published or forwarded it.
	_ "github.com/containerd/containerd/api/events"
)

// QueueSize is how many envelopes a subscriber may leave unread before it is
// dropped.
const QueueSize = 1024

// Exchange broadcasts envelopes to subscribers. The zero value is not usable;
// call New. An Exchange is safe for concurrent use.
type Exchange struct {
	mu   sync.Mutex // serialises delivery, so all subscribers see one order
	subs map[*subscription]struct{}
}

var (
	_ events.Publisher  = (*Exchange)(nil)
	_ events.Forwarder  = (*Exchange)(nil)
	_ events.Subscriber = (*Exchange)(nil)
)

// New returns an Exchange with no subscribers.
func New() *Exchange {
	return &Exchange{subs: make(map[*subscription]struct{})}
}

// Publish sends event on topic in the namespace of ctx, stamped with the
// current time. The event must be a pointer: a protobuf message (its type URL
// is then the message's full name, "containerd.events.TaskExit"), a type
// registered with typeurl, or a typeurl.Any passed through as it is.
func (e *Exchange) Publish(ctx context.Context, topic string, event events.Event) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return fmt.Errorf("events: publish on %q: %w", topic, err)
	}
	if err := validateTopic(topic); err != nil {
		return fmt.Errorf("events: publish in namespace %q: %w", ns, err)
	}
	encoded, err := marshal(event)
	if err != nil {
		return fmt.Errorf("events: publish on %q in namespace %q: %w", topic, ns, err)
	}
	e.deliver(&events.Envelope{
		Timestamp: time.Now().UTC(),
		Namespace: ns,
		Topic:     topic,
		Event:     encoded,
	})
	return nil
}

// Forward delivers an envelope made elsewhere, unchanged, after checking its
// namespace, topic, timestamp and event. Subscribers share the envelope, so
// the caller must not modify it afterwards.
func (e *Exchange) Forward(ctx context.Context, env *events.Envelope) error {
	if err := validateEnvelope(env); err != nil {
		return fmt.Errorf("events: forward: %w", err)
	}
	e.deliver(env)
	return nil
}

// marshal encodes event, refusing what would make typeurl panic.
func marshal(event events.Event) (typeurl.Any, error) {
	v := reflect.ValueOf(event)
	if !v.IsValid() || v.Kind() != reflect.Pointer || v.IsNil() {
		return nil, fmt.Errorf("event %T is not a non-nil pointer: %w", event, errdefs.ErrInvalidArgument)
	}
	encoded, err := typeurl.MarshalAny(event)
	if err != nil {
		return nil, fmt.Errorf("encode event %T: %w: %w", event, err, errdefs.ErrInvalidArgument)
	}
	return encoded, nil
}

// validateTopic applies containerd's rules: a topic is '/' followed by one or
// more identifiers separated by '/', like "/tasks/exit".
func validateTopic(topic string) error {
	if !strings.HasPrefix(topic, "/") || len(topic) == 1 {
		return fmt.Errorf("topic %q must be '/' followed by '/'-separated components: %w", topic, errdefs.ErrInvalidArgument)
	}
	for component := range strings.SplitSeq(topic[1:], "/") {
		if err := identifiers.Validate(component); err != nil {
			return fmt.Errorf("topic %q: component: %w", topic, err)
		}
	}
	return nil
}

func validateEnvelope(env *events.Envelope) error {
	switch {
	case env == nil:
		return fmt.Errorf("no envelope: %w", errdefs.ErrInvalidArgument)
	case env.Timestamp.IsZero():
		return fmt.Errorf("envelope on %q has no timestamp: %w", env.Topic, errdefs.ErrInvalidArgument)
	case env.Event == nil:
		return fmt.Errorf("envelope on %q has no event: %w", env.Topic, errdefs.ErrInvalidArgument)
	}
	if err := namespaces.Validate(env.Namespace); err != nil {
		return fmt.Errorf("envelope on %q: %w", env.Topic, err)
	}
	return validateTopic(env.Topic)
}
