package integration

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	"github.com/containerd/containerd/api/types"
)

const eventTimeout = 5 * time.Second

// subscribed creates and labels namespaces until each subscriber has
// printed one of these events: ctr events gives no sign of being
// subscribed, and what happens before is not delivered.
func subscribed(t *testing.T, d *daemon, subs ...*background) {
	t.Helper()
	deadline := time.Now().Add(eventTimeout)
	for i := 0; ; i++ {
		probe := fmt.Sprintf("probe%d", i)
		d.mustCtr("namespaces", "create", probe)
		d.mustCtr("namespaces", "label", probe, "probe=yes")
		for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			all := true
			for _, s := range subs {
				all = all && strings.Contains(s.stdout.String(), " "+probe+" ")
			}
			if all {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("ctr events printed no probe within %s", eventTimeout)
		}
	}
}

// waitOutput waits until the subscriber's stdout contains want.
func waitOutput(t *testing.T, what string, s *background, want string) {
	t.Helper()
	eventually(t, eventTimeout, func() error {
		if !strings.Contains(s.stdout.String(), want) {
			return fmt.Errorf("%s lacks %q; stdout:\n%s\nstderr:\n%s", what, want, s.stdout, s.stderr)
		}
		return nil
	})
}

// printed lists the "NAMESPACE TOPIC" of each event of ctr events output,
// probes left out.
func printed(out string) []string {
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		// DATE TIME +ZONE UTC NAMESPACE TOPIC EVENT
		if f := strings.Fields(line); len(f) >= 6 && !strings.HasPrefix(f[4], "probe") {
			got = append(got, f[4]+" "+f[5])
		}
	}
	return got
}

func TestEvents(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	all := d.ctrBackground(nil, "events")
	created := d.ctrBackground(nil, "events", `topic=="/namespaces/create"`)
	labelled := d.ctrBackground(nil, "events", `topic=="/namespaces/update"`, `namespace==e2`)
	subscribed(t, d, all, created, labelled)

	// A gRPC subscriber sees the topics ctr 1.6 cannot decode.
	stream, err := eventsapi.NewEventsClient(d.client()).Subscribe(nsContext(t, "default", ""),
		&eventsapi.SubscribeRequest{Filters: []string{`topic~="^/content/"`}})
	if err != nil {
		t.Fatal(err)
	}
	envelopes := make(chan *types.Envelope, 16)
	go func() {
		for {
			env, err := stream.Recv()
			if err != nil {
				close(envelopes)
				return
			}
			envelopes <- env
		}
	}()
	// The gRPC subscription has no sign of being ready either: the first
	// ingest may be missed, so ingest until one arrives.
	var env *types.Envelope
	for i := 0; env == nil; i++ {
		blob := fmt.Sprintf("event blob %d", i)
		d.mustCtrIn(strings.NewReader(blob), "-n", "e1", "content", "ingest", "ref")
		select {
		case env = <-envelopes:
			if env == nil {
				t.Fatal("event stream ended")
			}
			if env.Topic != "/content/create" || env.Namespace != "e1" {
				t.Errorf("first content event: topic %q in namespace %q, want /content/create in e1", env.Topic, env.Namespace)
			}
		case <-time.After(200 * time.Millisecond):
		}
		if i > 25 {
			t.Fatal("no /content/create event arrived on the gRPC subscription")
		}
	}

	d.mustCtr("namespaces", "create", "e2")
	d.mustCtr("-n", "e2", "namespaces", "label", "e2", "k=v")
	d.mustCtr("-n", "e3", "namespaces", "label", "e1", "k=v") // update of e1, not e2
	d.mustCtr("namespaces", "create", "end")

	waitOutput(t, "ctr events", all, " e2 /namespaces/create ")
	waitOutput(t, "ctr events", all, " e2 /namespaces/update ")
	waitOutput(t, "ctr events", all, " end /namespaces/create ")
	// ctr 1.6 predates the ContentCreate event type: it warns that it
	// cannot decode it, which shows the event arrived.
	if got := all.stderr.String(); !strings.Contains(got, "containerd.events.ContentCreate") {
		t.Errorf("ctr events stderr lacks the ContentCreate it could not decode:\n%s", got)
	}

	waitOutput(t, `ctr events topic=="/namespaces/create"`, created, " end /namespaces/create ")
	if got, want := printed(created.stdout.String()), []string{"e2 /namespaces/create", "end /namespaces/create"}; !slices.Equal(got, want) {
		t.Errorf(`ctr events topic=="/namespaces/create" printed %q, want %q`, got, want)
	}
	if got := created.stderr.String(); got != "" {
		t.Errorf(`ctr events topic=="/namespaces/create" received other events it could not decode:\n%s`, got)
	}

	waitOutput(t, "ctr events with two filters", labelled, " e1 /namespaces/update ")
	want := []string{"e2 /namespaces/create", "e2 /namespaces/update", "e1 /namespaces/update"}
	if got := printed(labelled.stdout.String()); !slices.Equal(got, want) {
		t.Errorf(`ctr events topic=="/namespaces/update" namespace==e2 printed %q, want %q (either filter matches)`, got, want)
	}
}
