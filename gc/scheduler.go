package gc

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/berth-dev/berth/log"
	"github.com/containerd/errdefs"
)

// SchedulerConfig is the [plugins."io.containerd.gc.v1.scheduler"] section.
// containerd's keys keep their meaning; Interval is berth's own.
type SchedulerConfig struct {
	// PauseThreshold is accepted for compatibility; a berth collection
	// pauses writers only for its short sweep.
	PauseThreshold float64 `toml:"pause_threshold"`
	// DeletionThreshold: collect once this many deletions have happened
	// (0: after the first one), ScheduleDelay later.
	DeletionThreshold int `toml:"deletion_threshold"`
	// MutationThreshold is accepted for compatibility.
	MutationThreshold int `toml:"mutation_threshold"`
	// ScheduleDelay is how long after a deletion the collection runs,
	// so that bursts of deletions share one collection.
	ScheduleDelay string `toml:"schedule_delay"`
	// StartupDelay is how long after start-up the first collection runs.
	StartupDelay string `toml:"startup_delay"`
	// Interval is how often a collection runs with no deletion at all
	// (expired leases, abandoned ingests). "0" disables the timer.
	Interval string `toml:"interval"`
}

// DefaultSchedulerConfig is containerd's defaults plus a 10 minute timer.
func DefaultSchedulerConfig() *SchedulerConfig {
	return &SchedulerConfig{PauseThreshold: 0.02, MutationThreshold: 100, ScheduleDelay: "0ms", StartupDelay: "100ms", Interval: "10m"}
}

// Collector runs one collection.
type Collector interface {
	GarbageCollect(ctx context.Context) error
}

// CollectorFunc lets a function be a Collector.
type CollectorFunc func(ctx context.Context) error

// GarbageCollect implements Collector.
func (f CollectorFunc) GarbageCollect(ctx context.Context) error { return f(ctx) }

// Scheduler runs a Collector after deletions, at start-up and on a timer.
type Scheduler struct {
	c                           Collector
	threshold                   int
	scheduleDelay, startupDelay time.Duration
	interval                    time.Duration

	mu        sync.Mutex
	deletions int
	trigger   chan struct{}
}

// NewScheduler validates cfg and returns a scheduler for c; a nil cfg is
// DefaultSchedulerConfig. Invalid values are errdefs.ErrInvalidArgument
// errors naming the key.
func NewScheduler(c Collector, cfg *SchedulerConfig) (*Scheduler, error) {
	if cfg == nil {
		cfg = DefaultSchedulerConfig()
	}
	s := &Scheduler{c: c, threshold: cfg.DeletionThreshold, trigger: make(chan struct{}, 1)}
	var err error
	if s.scheduleDelay, err = parseDuration("schedule_delay", cfg.ScheduleDelay); err != nil {
		return nil, err
	}
	if s.startupDelay, err = parseDuration("startup_delay", cfg.StartupDelay); err != nil {
		return nil, err
	}
	if s.interval, err = parseDuration("interval", cfg.Interval); err != nil {
		return nil, err
	}
	if cfg.PauseThreshold < 0 || cfg.PauseThreshold > 0.5 {
		return nil, fmt.Errorf("gc scheduler: pause_threshold %v must be between 0 and 0.5: %w", cfg.PauseThreshold, errdefs.ErrInvalidArgument)
	}
	if cfg.DeletionThreshold < 0 {
		return nil, fmt.Errorf("gc scheduler: deletion_threshold %d must not be negative: %w", cfg.DeletionThreshold, errdefs.ErrInvalidArgument)
	}
	return s, nil
}

func parseDuration(key, v string) (time.Duration, error) {
	if v == "" || v == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("gc scheduler: %s %q is not a duration such as \"100ms\" or \"10m\": %w", key, v, errdefs.ErrInvalidArgument)
	}
	return d, nil
}

// Deleted records one deletion; enough of them schedule a collection.
func (s *Scheduler) Deleted() {
	s.mu.Lock()
	s.deletions++
	// containerd's rule: deletion_threshold deletions, or any one when 0.
	due := s.deletions >= max(s.threshold, 1)
	s.mu.Unlock()
	if due {
		select {
		case s.trigger <- struct{}{}:
		default: // one is already pending
		}
	}
}

// Run collects until ctx ends.
func (s *Scheduler) Run(ctx context.Context) {
	next := time.NewTimer(s.startupDelay)
	defer next.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.trigger:
			if !sleep(ctx, s.scheduleDelay) {
				return
			}
		case <-next.C:
		}
		s.mu.Lock()
		s.deletions = 0
		s.mu.Unlock()
		// The collection about to run covers every deletion so far,
		// including those that triggered again during the delay.
		select {
		case <-s.trigger:
		default:
		}
		if err := s.c.GarbageCollect(ctx); err != nil && ctx.Err() == nil {
			log.G(ctx).Error("garbage collection failed", "error", err)
		}
		if s.interval > 0 {
			next.Reset(s.interval)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d == 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
