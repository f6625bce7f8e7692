package pull

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// leaseCounter stands in for the lease manager: it counts live leases.
type leaseCounter struct{ live atomic.Int32 }

func (l *leaseCounter) lease(ctx context.Context) (context.Context, func(), error) {
	l.live.Add(1)
	var once sync.Once
	return ctx, func() { once.Do(func() { l.live.Add(-1) }) }, nil
}

var testDesc = ocispec.Descriptor{Digest: digest.FromString("blob"), Size: 4}

func noProgress(Progress) {}

func within(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestFlightsShare checks that a second join shares the running download,
// that its lease lives until the last user left, and that progress goes
// to the users still there.
func TestFlightsShare(t *testing.T) {
	var leases leaseCounter
	fs := newFlights(leases.lease)
	ctx := context.Background()
	proceed := make(chan struct{})
	starts := 0
	start := func(_ context.Context, d *download, progress func(Progress)) {
		starts++
		<-proceed
		progress(Progress{Status: StatusDone})
		d.finish(nil)
	}
	var gotA, gotB []Progress
	dA, leaveA := fs.join(ctx, testDesc, func(p Progress) { gotA = append(gotA, p) }, start)
	dB, leaveB := fs.join(ctx, testDesc, func(p Progress) { gotB = append(gotB, p) }, start)
	if dA != dB {
		t.Fatal("a second join started a second download")
	}
	leaveA()
	close(proceed)
	if err := dB.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if n := leases.live.Load(); n != 1 {
		t.Errorf("%d leases live after the download, while a user is left; want 1", n)
	}
	leaveB()
	if n := leases.live.Load(); n != 0 {
		t.Errorf("%d leases live after every user left, want 0", n)
	}
	if starts != 1 || len(gotA) != 0 || len(gotB) != 1 {
		t.Errorf("%d starts, %d reports to the user who left, %d to the other; want 1, 0, 1", starts, len(gotA), len(gotB))
	}
}

// TestFlightsLastLeaveStops checks that the last user to leave cancels
// the download and waits for it, and that a join meanwhile starts a new
// download only once the old one has stopped.
func TestFlightsLastLeaveStops(t *testing.T) {
	var leases leaseCounter
	fs := newFlights(leases.lease)
	ctx := context.Background()
	cancelled, letGo := make(chan struct{}), make(chan struct{})
	var running atomic.Int32
	first := func(ctx context.Context, d *download, _ func(Progress)) {
		running.Add(1)
		defer running.Add(-1)
		<-ctx.Done()
		close(cancelled)
		<-letGo // winds down slowly
		d.finish(ctx.Err())
	}
	d1, leave1 := fs.join(ctx, testDesc, noProgress, first)
	left := make(chan struct{})
	go func() {
		leave1()
		close(left)
	}()
	within(t, "the download to be cancelled", cancelled)

	secondRan := make(chan struct{})
	second := func(_ context.Context, d *download, _ func(Progress)) {
		if running.Load() != 0 {
			t.Error("a new download started while the cancelled one still ran")
		}
		close(secondRan)
		d.finish(nil)
	}
	d2, leave2 := fs.join(ctx, testDesc, noProgress, second)
	defer leave2()
	if d2 == d1 {
		t.Fatal("a join took over a cancelled download")
	}
	select {
	case <-left:
		t.Fatal("the last leave returned before its download stopped")
	case <-secondRan:
		t.Fatal("the new download started before the cancelled one stopped")
	case <-time.After(50 * time.Millisecond):
	}
	close(letGo)
	within(t, "the last leave to return", left)
	within(t, "the new download", secondRan)
	if err := d1.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled download: %v, want context.Canceled", err)
	}
	if err := d2.Wait(ctx); err != nil {
		t.Errorf("new download: %v", err)
	}
	leave2()
	if n := leases.live.Load(); n != 0 {
		t.Errorf("%d leases live at the end, want 0", n)
	}
}

// TestDownloadWaitHonoursContext checks that Wait and a follower give up
// when their context is done, though the download goes on.
func TestDownloadWaitHonoursContext(t *testing.T) {
	d := newDownload(testDesc)
	d.data = nopReaderAt{}
	ctx, cancel := context.WithCancel(context.Background())
	r, err := d.Follow(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	go func() {
		_, err := r.Read(make([]byte, 1))
		errs <- err
	}()
	go func() { errs <- d.Wait(ctx) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("got %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a waiter ignored its context")
		}
	}
	r.Close()
	d.finish(nil)
	if d.data != nil {
		t.Error("the data reader stayed open after the download and its last follower ended")
	}
}

type nopReaderAt struct{}

func (nopReaderAt) ReadAt([]byte, int64) (int, error) { return 0, errors.New("unexpected read") }
func (nopReaderAt) Close() error                      { return nil }
