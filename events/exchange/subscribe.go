package exchange

import (
	"context"
	"errors"
	"fmt"

	"github.com/berth-dev/berth/events"
	"github.com/berth-dev/berth/filters"
	"github.com/containerd/errdefs"
)

// subscription is one Subscribe call. It lives in Exchange.subs from
// Subscribe until its context ends or it falls behind; whoever removes it
// from the map, under Exchange.mu, closes its channels.
type subscription struct {
	filter filters.Filter
	ch     chan *events.Envelope // the queue; capacity QueueSize
	errs   chan error            // capacity 1: never blocks the closer
	stop   func() bool           // cancels the context.AfterFunc
}

// Subscribe returns the envelopes matching any of fs (containerd filter
// syntax over "topic", "namespace" and "event.<field>"; none matches all),
// in publish order, and an error channel. Both channels close when the
// subscription ends, which happens when:
//
//   - fs do not parse: errs receives the InvalidArgument error at once;
//   - ctx is cancelled: errs receives nothing, as cancellation is the
//     normal way to unsubscribe;
//   - ctx ends otherwise (deadline): errs receives ctx.Err();
//   - QueueSize envelopes are waiting unread when another one matches: the
//     subscriber has fallen behind and is dropped, and errs receives an
//     error wrapping errdefs.ErrResourceExhausted. Envelopes already queued
//     can still be read from ch before it reports closed.
//
// No goroutine is kept per subscriber.
func (e *Exchange) Subscribe(ctx context.Context, fs ...string) (<-chan *events.Envelope, <-chan error) {
	s := &subscription{
		ch:   make(chan *events.Envelope, QueueSize),
		errs: make(chan error, 1),
	}
	filter, err := filters.Parse(fs...)
	if err != nil {
		s.close(fmt.Errorf("events: subscribe: %w", err))
		return s.ch, s.errs
	}
	s.filter = filter

	e.mu.Lock()
	defer e.mu.Unlock()
	e.subs[s] = struct{}{}
	// If ctx is already done, this runs at once in its own goroutine, which
	// waits for mu: s is fully registered by then.
	s.stop = context.AfterFunc(ctx, func() { e.unsubscribe(s, endReason(ctx)) })
	return s.ch, s.errs
}

// endReason is what a subscriber whose context ended is told.
func endReason(ctx context.Context) error {
	if err := ctx.Err(); !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func (e *Exchange) unsubscribe(s *subscription, reason error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.subs[s]; ok {
		delete(e.subs, s)
		s.close(reason)
	}
}

// deliver queues env for every subscriber whose filter matches it, dropping
// those whose queue is full.
func (e *Exchange) deliver(env *events.Envelope) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for s := range e.subs {
		if !s.filter.Match(env) {
			continue
		}
		select {
		case s.ch <- env:
		default:
			delete(e.subs, s)
			s.stop()
			s.close(fmt.Errorf("events: subscriber fell behind: %d envelopes left unread, dropped at %q in namespace %q: %w",
				QueueSize, env.Topic, env.Namespace, errdefs.ErrResourceExhausted))
		}
	}
}

// close ends the subscription, reporting reason unless it is nil.
func (s *subscription) close(reason error) {
	close(s.ch)
	if reason != nil {
		s.errs <- reason
	}
	close(s.errs)
}
