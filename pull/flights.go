package pull

import (
	"context"
	"fmt"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// flights shares downloads of the same blob between concurrent pulls.
//
// A download writes into the namespace of the pull that started it, under
// a lease of its own rather than that pull's: the pull may give up while
// others still follow the download, and its lease goes with it. Every
// pull that used a download takes its own reference to the blob
// (job.ensureRef) before it leaves; the download's lease is released once
// the download has ended and every pull has left. Progress goes to the
// pulls using the download, never to one that left.
type flights struct {
	mu sync.Mutex
	m  map[digest.Digest]*flight
	// lease returns ctx under a new lease and a function deleting it.
	lease func(context.Context) (context.Context, func(), error)
}

type flight struct {
	d      *download
	users  int
	cancel context.CancelFunc
	// ended is set once the download has ended. release, nil once taken,
	// deletes its lease: the flight's goroutine calls it if nobody uses
	// the download any more, else the last user to leave.
	ended   bool
	release func()
	// gone is closed once the goroutine of the flight has finished.
	gone chan struct{}

	// watchMu is held to change watchers and, read-locked, while they are
	// called, so that none is called once its pull has left.
	watchMu  sync.RWMutex
	watchers map[int]func(Progress)
	nextID   int
}

func newFlights(lease func(context.Context) (context.Context, func(), error)) *flights {
	return &flights{m: map[digest.Digest]*flight{}, lease: lease}
}

// join returns the download of desc, starting it with start if nobody
// has, and reports its progress to progress until leave is called. leave
// must be called when the caller is done with the download. The download
// runs until it ends or every caller has left; the last one to leave a
// download still running cancels it and waits for it to stop, so that a
// pull leaves nothing writing behind it.
func (fs *flights) join(ctx context.Context, desc ocispec.Descriptor, progress func(Progress),
	start func(ctx context.Context, d *download, progress func(Progress))) (d *download, leave func()) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fl := fs.m[desc.Digest]
	if fl == nil || fl.users == 0 {
		// None, or a cancelled one winding down: a new download starts
		// once the old one has let go of the ingest.
		fl = fs.start(ctx, desc, fl, start)
	}
	fl.users++
	fl.watchMu.Lock()
	id := fl.nextID
	fl.nextID++
	fl.watchers[id] = progress
	fl.watchMu.Unlock()
	var once sync.Once
	return fl.d, func() { once.Do(func() { fs.leave(fl, id) }) }
}

// start runs a new flight of desc after prev, if any, has gone; fs.mu is
// held.
func (fs *flights) start(ctx context.Context, desc ocispec.Descriptor, prev *flight,
	start func(context.Context, *download, func(Progress))) *flight {
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	fl := &flight{d: newDownload(desc), cancel: cancel, gone: make(chan struct{}), watchers: map[int]func(Progress){}}
	fs.m[desc.Digest] = fl
	go func() {
		defer close(fl.gone)
		if prev != nil {
			<-prev.gone
		}
		lctx, release, err := fs.lease(fctx)
		if err != nil {
			fl.d.finish(fmt.Errorf("layer %s: %w", desc.Digest, err))
			release = func() {}
		} else {
			start(lctx, fl.d, fl.progress)
		}
		fs.mu.Lock()
		fl.ended = true
		if fs.m[desc.Digest] == fl {
			delete(fs.m, desc.Digest)
		}
		if fl.users > 0 {
			fl.release, release = release, nil
		}
		fs.mu.Unlock()
		if release != nil {
			release()
		}
	}()
	return fl
}

func (fs *flights) leave(fl *flight, id int) {
	fl.watchMu.Lock()
	delete(fl.watchers, id)
	fl.watchMu.Unlock()
	fs.mu.Lock()
	fl.users--
	var release func()
	stopping := false
	if fl.users == 0 {
		if fl.ended {
			release, fl.release = fl.release, nil
		} else {
			fl.cancel()
			stopping = true
		}
	}
	fs.mu.Unlock()
	if release != nil {
		release()
	}
	if stopping {
		<-fl.gone
	}
}

// progress reports p to every pull using the download.
func (fl *flight) progress(p Progress) {
	fl.watchMu.RLock()
	defer fl.watchMu.RUnlock()
	for _, fn := range fl.watchers {
		fn(p)
	}
}
