// Package publisher forwards the shim's task events to the daemon over its
// ttrpc Events service (containerd.services.events.ttrpc.v1.Events/Forward),
// the way every shim v2 reports /tasks/create, /tasks/exit and the rest.
//
// Publish never blocks on the daemon: events are queued and one goroutine
// sends them in order, reconnecting and retrying while the daemon is away
// (it may be restarting). An event that still fails after MaxAttempts is
// dropped, so that a daemon that is gone for good cannot stall the queue.
//
// Lifecycle: New, Publish any number of times, Close (which flushes for a
// bounded time).
package publisher

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TTRPCNamespaceHeader is the ttrpc metadata key that carries the namespace.
const TTRPCNamespaceHeader = "containerd-namespace-ttrpc"

// MaxAttempts is how many times an event is sent before it is dropped.
const MaxAttempts = 6

// Publisher queues events and forwards them to one daemon address.
type Publisher struct {
	address   string
	namespace string
	onError   func(topic string, err error)

	mu     sync.Mutex
	queue  []*types.Envelope
	notify chan struct{}
	closed bool
	done   chan struct{}

	client *ttrpc.Client // owned by the sending goroutine
}

// New returns a Publisher to the daemon's ttrpc address ("unix:///path" or
// a plain path) for events of namespace ns. An empty address yields a
// Publisher that discards events. onError, if set, hears of each failed
// attempt.
func New(address, ns string, onError func(topic string, err error)) *Publisher {
	p := &Publisher{
		address:   strings.TrimPrefix(address, "unix://"),
		namespace: ns,
		onError:   onError,
		notify:    make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	go p.run()
	return p
}

// Publish queues event under topic ("/tasks/exit"...), stamped now.
func (p *Publisher) Publish(topic string, event proto.Message) error {
	a, err := typeurl.MarshalAnyToProto(event)
	if err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	env := &types.Envelope{
		Timestamp: timestamppb.Now(),
		Namespace: p.namespace,
		Topic:     topic,
		Event:     a,
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("publish %s: publisher closed", topic)
	}
	if p.address == "" {
		return nil
	}
	p.queue = append(p.queue, env)
	select {
	case p.notify <- struct{}{}:
	default:
	}
	return nil
}

// Close stops accepting events and waits up to timeout for the queue to
// drain.
func (p *Publisher) Close(timeout time.Duration) {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.notify)
	}
	p.mu.Unlock()
	select {
	case <-p.done:
	case <-time.After(timeout):
	}
}

func (p *Publisher) run() {
	defer close(p.done)
	defer func() {
		if p.client != nil {
			p.client.Close()
		}
	}()
	for range p.notify {
		for env := p.next(); env != nil; env = p.next() {
			p.send(env)
		}
	}
	for env := p.next(); env != nil; env = p.next() {
		p.send(env)
	}
}

func (p *Publisher) next() *types.Envelope {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		return nil
	}
	env := p.queue[0]
	p.queue = p.queue[1:]
	return env
}

// send forwards env, retrying with a growing pause.
func (p *Publisher) send(env *types.Envelope) {
	for attempt := 1; attempt <= MaxAttempts; attempt++ {
		err := p.forward(env)
		if err == nil {
			return
		}
		if p.onError != nil {
			p.onError(env.Topic, fmt.Errorf("attempt %d of %d: %w", attempt, MaxAttempts, err))
		}
		if p.client != nil {
			p.client.Close()
			p.client = nil
		}
		if attempt < MaxAttempts {
			time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
		}
	}
}

func (p *Publisher) forward(env *types.Envelope) error {
	if p.client == nil {
		conn, err := net.DialTimeout("unix", p.address, 5*time.Second)
		if err != nil {
			return fmt.Errorf("dial daemon ttrpc %s: %w", p.address, err)
		}
		p.client = ttrpc.NewClient(conn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = ttrpc.WithMetadata(ctx, ttrpc.MD{TTRPCNamespaceHeader: []string{p.namespace}})
	_, err := eventsapi.NewEventsClient(p.client).Forward(ctx, &eventsapi.ForwardRequest{Envelope: env})
	if err != nil {
		return fmt.Errorf("forward %s to %s: %w", env.Topic, p.address, err)
	}
	return nil
}
