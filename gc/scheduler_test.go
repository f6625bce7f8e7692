package gc

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// recorder is a Collector that reports each collection on a channel.
type recorder struct {
	runs chan time.Time
	err  error
}

func newRecorder() *recorder { return &recorder{runs: make(chan time.Time, 100)} }

func (r *recorder) GarbageCollect(ctx context.Context) error {
	r.runs <- time.Now()
	return r.err
}

// expectRun waits up to within for a collection and returns its time.
func (r *recorder) expectRun(t *testing.T, within time.Duration) time.Time {
	t.Helper()
	select {
	case at := <-r.runs:
		return at
	case <-time.After(within):
		t.Fatalf("no collection within %v", within)
		return time.Time{}
	}
}

// expectNone fails if a collection runs within d.
func (r *recorder) expectNone(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-r.runs:
		t.Fatalf("unexpected collection within %v", d)
	case <-time.After(d):
	}
}

// start runs a scheduler for r with cfg until the test ends; it waits for
// Run to return.
func start(t *testing.T, r *recorder, cfg SchedulerConfig) *Scheduler {
	t.Helper()
	s, err := NewScheduler(r, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return s
}

// quiet is a config with neither start-up collection nor timer.
func quiet() SchedulerConfig {
	return SchedulerConfig{ScheduleDelay: "0", StartupDelay: "1h", Interval: "0"}
}

func TestSchedulerDeletedAfterDelay(t *testing.T) {
	r := newRecorder()
	cfg := quiet()
	cfg.ScheduleDelay = "100ms"
	s := start(t, r, cfg)
	r.expectNone(t, 50*time.Millisecond) // nothing deleted yet

	before := time.Now()
	s.Deleted()
	at := r.expectRun(t, 5*time.Second)
	if waited := at.Sub(before); waited < 100*time.Millisecond {
		t.Errorf("collection %v after the deletion, want at least schedule_delay (100ms)", waited)
	}
	r.expectNone(t, 200*time.Millisecond) // one deletion, one collection
}

// Deletions during schedule_delay share the collection they wait for.
func TestSchedulerCoalescesBurst(t *testing.T) {
	r := newRecorder()
	cfg := quiet()
	cfg.ScheduleDelay = "300ms"
	s := start(t, r, cfg)
	for range 20 {
		s.Deleted()
		time.Sleep(time.Millisecond)
	}
	r.expectRun(t, 5*time.Second)
	r.expectNone(t, 500*time.Millisecond)

	// A later deletion gets a collection of its own.
	s.Deleted()
	r.expectRun(t, 5*time.Second)
}

func TestSchedulerDeletionThreshold(t *testing.T) {
	r := newRecorder()
	cfg := quiet()
	cfg.DeletionThreshold = 3
	s := start(t, r, cfg)
	s.Deleted()
	s.Deleted()
	r.expectNone(t, 100*time.Millisecond)
	s.Deleted() // the third
	r.expectRun(t, 5*time.Second)

	// The count starts again after a collection.
	s.Deleted()
	s.Deleted()
	r.expectNone(t, 100*time.Millisecond)
	s.Deleted()
	r.expectRun(t, 5*time.Second)
}

func TestSchedulerStartupAndInterval(t *testing.T) {
	r := newRecorder()
	start(t, r, SchedulerConfig{StartupDelay: "10ms", Interval: "50ms"})
	first := r.expectRun(t, 5*time.Second)
	second := r.expectRun(t, 5*time.Second)
	if gap := second.Sub(first); gap < 50*time.Millisecond {
		t.Errorf("timer collections %v apart, want at least the interval (50ms)", gap)
	}
	r.expectRun(t, 5*time.Second)
}

func TestSchedulerStartupOnly(t *testing.T) {
	r := newRecorder()
	start(t, r, SchedulerConfig{StartupDelay: "10ms", Interval: "0"})
	r.expectRun(t, 5*time.Second)
	r.expectNone(t, 200*time.Millisecond) // interval 0: no timer
}

func TestSchedulerKeepsGoingAfterError(t *testing.T) {
	r := newRecorder()
	r.err = errors.New("disk on fire")
	s := start(t, r, quiet())
	s.Deleted()
	r.expectRun(t, 5*time.Second)
	s.Deleted()
	r.expectRun(t, 5*time.Second)
}

func TestSchedulerRunStops(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   SchedulerConfig
		delay bool // delete first, so that Run is inside schedule_delay
	}{
		{"idle", quiet(), false},
		{"during schedule_delay", SchedulerConfig{ScheduleDelay: "1h", StartupDelay: "1h"}, true},
		{"with a timer", SchedulerConfig{StartupDelay: "1ms", Interval: "1ms"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecorder()
			s, err := NewScheduler(r, &tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				s.Run(ctx)
				close(done)
			}()
			if tc.delay {
				s.Deleted()
			}
			time.Sleep(20 * time.Millisecond)
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return after its context ended")
			}
			if tc.delay && len(r.runs) != 0 {
				t.Errorf("%d collections ran although the context ended during schedule_delay", len(r.runs))
			}
		})
	}
}

func TestSchedulerConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*SchedulerConfig)
		want []string
	}{
		{"schedule_delay", func(c *SchedulerConfig) { c.ScheduleDelay = "banana" }, []string{"schedule_delay", `"banana"`}},
		{"startup_delay", func(c *SchedulerConfig) { c.StartupDelay = "-1s" }, []string{"startup_delay", `"-1s"`}},
		{"interval", func(c *SchedulerConfig) { c.Interval = "10" }, []string{"interval", `"10"`}},
		{"pause_threshold high", func(c *SchedulerConfig) { c.PauseThreshold = 2 }, []string{"pause_threshold", "2"}},
		{"pause_threshold negative", func(c *SchedulerConfig) { c.PauseThreshold = -0.1 }, []string{"pause_threshold", "-0.1"}},
		{"deletion_threshold", func(c *SchedulerConfig) { c.DeletionThreshold = -1 }, []string{"deletion_threshold", "-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultSchedulerConfig()
			tc.edit(cfg)
			_, err := NewScheduler(newRecorder(), cfg)
			if err == nil {
				t.Fatal("no error")
			}
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("error %q is not InvalidArgument", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
		})
	}
}

func TestSchedulerConfigValid(t *testing.T) {
	for _, cfg := range []*SchedulerConfig{
		nil, // the defaults
		DefaultSchedulerConfig(),
		{},
		{ScheduleDelay: "0", StartupDelay: "0", Interval: "0", PauseThreshold: 0.5, DeletionThreshold: 10},
		{ScheduleDelay: "1.5s", StartupDelay: "100ms", Interval: "1h30m"},
	} {
		if _, err := NewScheduler(newRecorder(), cfg); err != nil {
			t.Errorf("NewScheduler(%+v): %v", cfg, err)
		}
	}
}
