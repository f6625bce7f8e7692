package cri

import (
	"context"
	"sync"
	"time"

	"github.com/berth-dev/berth/log"
	eventsapi "github.com/containerd/containerd/api/events"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// eventQueue is how many events a GetContainerEvents stream may leave
// unsent before it is ended: a kubelet that stops reading must not make
// the runtime buffer without bound, and it relists when its stream ends.
const eventQueue = 1024

// broadcaster fans the CRI's container events out to the
// GetContainerEvents streams.
type broadcaster struct {
	mu     sync.Mutex
	subs   map[chan *runtime.ContainerEventResponse]struct{}
	closed bool
}

func newBroadcaster() *broadcaster {
	return &broadcaster{subs: map[chan *runtime.ContainerEventResponse]struct{}{}}
}

// subscribe returns a channel of events, closed when the subscriber falls
// behind or the broadcaster closes, and the function that unsubscribes.
func (b *broadcaster) subscribe() (<-chan *runtime.ContainerEventResponse, func()) {
	ch := make(chan *runtime.ContainerEventResponse, eventQueue)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		close(ch)
		return ch, func() {}
	}
	b.subs[ch] = struct{}{}
	return ch, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if _, ok := b.subs[ch]; ok {
			delete(b.subs, ch)
			close(ch)
		}
	}
}

func (b *broadcaster) publish(ev *runtime.ContainerEventResponse) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- ev:
		default: // too far behind: end its stream
			delete(b.subs, ch)
			close(ch)
		}
	}
}

func (b *broadcaster) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for ch := range b.subs {
		delete(b.subs, ch)
		close(ch)
	}
}

// GetContainerEvents streams container and pod lifecycle events until the
// client goes away or berthd stops.
func (r *runtimeService) GetContainerEvents(_ *runtime.GetEventsRequest, stream grpc.ServerStreamingServer[runtime.ContainerEventResponse]) error {
	ch, unsubscribe := r.s.events.subscribe()
	defer unsubscribe()
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case ev, ok := <-ch:
			if !ok {
				return nil
			}
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}

// containerEvent publishes an event of container c (its sandbox's status
// and its own, as the kubelet's evented PLEG expects them).
func (s *Service) containerEvent(ctx context.Context, c *container, typ runtime.ContainerEventType) {
	ev := &runtime.ContainerEventResponse{
		ContainerId:        c.meta.ID,
		ContainerEventType: typ,
		CreatedAt:          time.Now().UnixNano(),
		ContainersStatuses: []*runtime.ContainerStatus{s.criContainerStatus(c)},
	}
	if sb, err := s.getSandbox(c.meta.SandboxID); err == nil {
		ev.PodSandboxStatus = s.criSandboxStatus(ctx, sb)
	}
	s.events.publish(ev)
}

// sandboxEvent publishes an event of a pod sandbox, with the statuses of
// its containers.
func (s *Service) sandboxEvent(ctx context.Context, sb *sandbox, typ runtime.ContainerEventType) {
	ev := &runtime.ContainerEventResponse{
		ContainerId:        sb.meta.ID,
		ContainerEventType: typ,
		CreatedAt:          time.Now().UnixNano(),
		PodSandboxStatus:   s.criSandboxStatus(ctx, sb),
	}
	for _, c := range s.containersOf(sb.meta.ID) {
		ev.ContainersStatuses = append(ev.ContainersStatuses, s.criContainerStatus(c))
	}
	s.events.publish(ev)
}

// watchOOM follows the shims' /tasks/oom events, so that a container the
// kernel's OOM killer ended says so in its status. A subscription the
// exchange drops (this loop fell behind) is renewed.
func (s *Service) watchOOM(ctx context.Context) {
	for ctx.Err() == nil {
		ch, errs := s.deps.Events.Subscribe(ctx, `topic=="/tasks/oom",namespace=="`+Namespace+`"`)
		for env := range ch {
			ev, err := typeurl.UnmarshalAny(env.Event)
			if err != nil {
				continue
			}
			if oom, ok := ev.(*eventsapi.TaskOOM); ok {
				s.containerOOM(ctx, oom.ContainerID)
			}
		}
		if err := <-errs; err != nil && ctx.Err() == nil {
			log.G(ctx).Warn("CRI: OOM event subscription ended, renewing", "error", err)
			time.Sleep(100 * time.Millisecond)
		}
	}
}
