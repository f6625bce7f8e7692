package exchange

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/berth-dev/berth/events"
	"github.com/berth-dev/berth/namespaces"
	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
)

const timeout = 5 * time.Second

// receive reads n envelopes from ch, failing the test if they are late.
func receive(t *testing.T, ch <-chan *events.Envelope, n int) []*events.Envelope {
	t.Helper()
	var got []*events.Envelope
	for len(got) < n {
		select {
		case env, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed after %d of %d envelopes", len(got), n)
			}
			got = append(got, env)
		case <-time.After(timeout):
			t.Fatalf("received %d of %d envelopes in %v", len(got), n, timeout)
		}
	}
	return got
}

// ended waits for both channels to close and returns what errs carried.
func ended(t *testing.T, ch <-chan *events.Envelope, errs <-chan error) error {
	t.Helper()
	deadline := time.After(timeout)
	var reason error
	for ch != nil || errs != nil {
		select {
		case _, ok := <-ch:
			if !ok {
				ch = nil
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
			} else {
				reason = err
			}
		case <-deadline:
			t.Fatalf("subscription still open after %v", timeout)
		}
	}
	return reason
}

func topics(envs []*events.Envelope) []string {
	var ts []string
	for _, env := range envs {
		ts = append(ts, env.Namespace+" "+env.Topic)
	}
	return ts
}

// publish publishes a NamespaceCreate event named name. It may be called
// from any goroutine.
func publish(t *testing.T, e *Exchange, ns, topic, name string) {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), ns)
	if err := e.Publish(ctx, topic, &apievents.NamespaceCreate{Name: name, Labels: map[string]string{"l": name}}); err != nil {
		t.Error(err)
	}
}

func TestPublishEnvelope(t *testing.T) {
	e := New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, _ := e.Subscribe(ctx)
	before := time.Now()
	publish(t, e, "ns1", "/namespaces/create", "foo")
	env := receive(t, ch, 1)[0]

	if env.Namespace != "ns1" || env.Topic != "/namespaces/create" {
		t.Errorf("envelope is %q %q, want ns1 /namespaces/create", env.Namespace, env.Topic)
	}
	if env.Timestamp.Before(before) || env.Timestamp.After(time.Now()) {
		t.Errorf("timestamp %v is not the time of publishing", env.Timestamp)
	}
	if got, want := env.Event.GetTypeUrl(), "containerd.events.NamespaceCreate"; got != want {
		t.Errorf("type URL %q, want %q", got, want)
	}
	decoded, err := typeurl.UnmarshalAny(env.Event)
	if err != nil {
		t.Fatal(err)
	}
	if nc, ok := decoded.(*apievents.NamespaceCreate); !ok || nc.Name != "foo" {
		t.Errorf("decoded event %#v, want NamespaceCreate foo", decoded)
	}
}

func TestFanOutFilters(t *testing.T) {
	e := New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type sub struct {
		filters []string
		want    []string
		ch      <-chan *events.Envelope
		errs    <-chan error
	}
	subs := []*sub{
		{filters: nil, want: []string{"a /x", "b /x", "a /y/z", "b /y/z"}},
		{filters: []string{`topic=="/x"`}, want: []string{"a /x", "b /x"}},
		{filters: []string{"namespace==b"}, want: []string{"b /x", "b /y/z"}},
		{filters: []string{"event.name==foo"}, want: []string{"a /x", "b /y/z"}},
		{filters: []string{"event.labels.l==bar"}, want: []string{"b /x", "a /y/z"}},
		{filters: []string{`topic~="^/y/"`, "namespace==a"}, want: []string{"a /x", "a /y/z", "b /y/z"}},
		{filters: []string{`topic=="/x",namespace==a`}, want: []string{"a /x"}},
		{filters: []string{"event.missing"}, want: nil},
	}
	for _, s := range subs {
		s.ch, s.errs = e.Subscribe(ctx, s.filters...)
	}
	publish(t, e, "a", "/x", "foo")
	publish(t, e, "b", "/x", "bar")
	publish(t, e, "a", "/y/z", "bar")
	publish(t, e, "b", "/y/z", "foo")

	for _, s := range subs {
		got := topics(receive(t, s.ch, len(s.want)))
		if !slices.Equal(got, s.want) {
			t.Errorf("Subscribe(%q) got %q, want %q", s.filters, got, s.want)
		}
		select {
		case env := <-s.ch:
			t.Errorf("Subscribe(%q) got extra %s %s", s.filters, env.Namespace, env.Topic)
		case err := <-s.errs:
			t.Errorf("Subscribe(%q) ended: %v", s.filters, err)
		default:
		}
	}
}

func TestPublishOrder(t *testing.T) {
	e := New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch1, _ := e.Subscribe(ctx)
	ch2, _ := e.Subscribe(ctx, "namespace==ns")
	const n = 500
	done := make(chan struct{})
	go func() { // publishers in parallel: both subscribers must see one order
		defer close(done)
		for range n {
			publish(t, e, "other", "/noise", "x")
		}
	}()
	for i := range n {
		publish(t, e, "ns", "/seq", strconv.Itoa(i))
	}
	<-done
	var seq1 []string
	for _, env := range receive(t, ch1, 2*n) {
		if env.Namespace == "ns" {
			seq1 = append(seq1, name(t, env))
		}
	}
	var seq2 []string
	for _, env := range receive(t, ch2, n) {
		seq2 = append(seq2, name(t, env))
	}
	for i := range n {
		if seq1[i] != strconv.Itoa(i) || seq2[i] != strconv.Itoa(i) {
			t.Fatalf("event %d arrived as %s and %s", i, seq1[i], seq2[i])
		}
	}
}

func name(t *testing.T, env *events.Envelope) string {
	t.Helper()
	v, ok := env.Field([]string{"event", "name"})
	if !ok {
		t.Fatalf("envelope %s has no event.name", env.Topic)
	}
	return v
}

func TestSlowSubscriberDropped(t *testing.T) {
	e := New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slowCh, slowErrs := e.Subscribe(ctx) // never read until the end
	fastCh, fastErrs := e.Subscribe(ctx)
	for range QueueSize { // fills both queues
		publish(t, e, "ns", "/x", "x")
	}
	receive(t, fastCh, QueueSize)

	const more = 10 // the first one overflows the slow queue
	published := make(chan struct{})
	go func() {
		defer close(published)
		for range more {
			publish(t, e, "ns", "/x", "x")
		}
	}()
	select {
	case <-published:
	case <-time.After(timeout):
		t.Fatal("publishing blocked on a slow subscriber")
	}
	receive(t, fastCh, more)

	if len(slowCh) != QueueSize {
		t.Errorf("slow subscriber has %d envelopes queued, want %d", len(slowCh), QueueSize)
	}
	err := ended(t, slowCh, slowErrs)
	if !errdefs.IsResourceExhausted(err) {
		t.Errorf("slow subscriber ended with %v, want ResourceExhausted", err)
	}
	select {
	case err := <-fastErrs:
		t.Errorf("fast subscriber ended: %v", err)
	default:
	}
	if got := e.subscribers(); got != 1 {
		t.Errorf("%d subscribers left, want 1", got)
	}
}

func (e *Exchange) subscribers() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.subs)
}

func TestSubscriptionEnd(t *testing.T) {
	e := New()
	ctx, cancel := context.WithCancel(context.Background())
	ch, errs := e.Subscribe(ctx)
	publish(t, e, "ns", "/x", "x")
	cancel()
	if err := ended(t, ch, errs); err != nil {
		t.Errorf("cancelled subscription ended with %v, want no error", err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	ch, errs = e.Subscribe(ctx)
	if err := ended(t, ch, errs); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("expired subscription ended with %v, want DeadlineExceeded", err)
	}

	ch, errs = e.Subscribe(context.Background(), "name==")
	if err := ended(t, ch, errs); !errdefs.IsInvalidArgument(err) {
		t.Errorf("subscription with a bad filter ended with %v, want InvalidArgument", err)
	}
	if got := e.subscribers(); got != 0 {
		t.Errorf("%d subscribers left, want 0", got)
	}
}

func TestNoLeaks(t *testing.T) {
	e := New()
	before := runtime.NumGoroutine()
	stop := make(chan struct{})
	publisher := make(chan struct{})
	go func() { // keep publishing while subscribers come and go
		defer close(publisher)
		for {
			select {
			case <-stop:
				return
			default:
				publish(t, e, "ns", "/x", "x")
				runtime.Gosched() // let subscribers come and go on one CPU too
			}
		}
	}()
	for i := range 2000 {
		ctx, cancel := context.WithCancel(context.Background())
		ch, errs := e.Subscribe(ctx, "namespace==ns")
		if i%2 == 0 {
			receive(t, ch, 1)
		}
		cancel()
		// Under a slow -race run the subscriber may fall behind first.
		if err := ended(t, ch, errs); err != nil && !errdefs.IsResourceExhausted(err) {
			t.Fatalf("subscription %d ended with %v", i, err)
		}
	}
	close(stop)
	<-publisher

	if got := e.subscribers(); got != 0 {
		t.Errorf("%d subscribers left, want 0", got)
	}
	deadline := time.Now().Add(timeout)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("%d goroutines before, %d after", before, after)
	}
}

func TestPublishErrors(t *testing.T) {
	e := New()
	ns := namespaces.WithNamespace(context.Background(), "ns")
	event := &apievents.NamespaceCreate{Name: "x"}
	for _, tc := range []struct {
		ctx   context.Context
		topic string
		event events.Event
		is    func(error) bool
	}{
		{context.Background(), "/x", event, errdefs.IsFailedPrecondition},
		{namespaces.WithNamespace(context.Background(), "bad ns"), "/x", event, errdefs.IsInvalidArgument},
		{ns, "", event, errdefs.IsInvalidArgument},
		{ns, "/", event, errdefs.IsInvalidArgument},
		{ns, "x", event, errdefs.IsInvalidArgument},
		{ns, "/x/", event, errdefs.IsInvalidArgument},
		{ns, "/x//y", event, errdefs.IsInvalidArgument},
		{ns, "/x/y z", event, errdefs.IsInvalidArgument},
		{ns, "/x", nil, errdefs.IsInvalidArgument},
		{ns, "/x", (*apievents.NamespaceCreate)(nil), errdefs.IsInvalidArgument},
		{ns, "/x", "not a pointer", errdefs.IsInvalidArgument},
		{ns, "/x", &struct{ A int }{}, errdefs.IsInvalidArgument}, // not registered with typeurl
	} {
		if err := e.Publish(tc.ctx, tc.topic, tc.event); !tc.is(err) {
			t.Errorf("Publish(%q, %#v) = %v, want another error class", tc.topic, tc.event, err)
		}
	}
}

func TestForward(t *testing.T) {
	e := New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, _ := e.Subscribe(ctx)
	event, err := typeurl.MarshalAny(&apievents.NamespaceCreate{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	stamp := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	valid := events.Envelope{Timestamp: stamp, Namespace: "ns", Topic: "/tasks/exit", Event: event}

	if err := e.Forward(ctx, &valid); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, ch, 1)[0]; got != &valid {
		t.Errorf("forwarded %+v, received %+v", valid, *got)
	}

	for _, mutate := range []func(*events.Envelope){
		func(env *events.Envelope) { env.Timestamp = time.Time{} },
		func(env *events.Envelope) { env.Namespace = "" },
		func(env *events.Envelope) { env.Namespace = "-bad" },
		func(env *events.Envelope) { env.Topic = "tasks/exit" },
		func(env *events.Envelope) { env.Event = nil },
	} {
		env := valid
		mutate(&env)
		if err := e.Forward(ctx, &env); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Forward(%+v) = %v, want InvalidArgument", env, err)
		}
	}
	if err := e.Forward(ctx, nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Forward(nil) = %v, want InvalidArgument", err)
	}
	if len(ch) != 0 {
		t.Errorf("%d invalid envelopes delivered", len(ch))
	}
}
