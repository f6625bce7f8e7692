package pull

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/berth-dev/berth/content"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// download is one layer blob arriving in the content store. Readers from
// Follow see its bytes as they land, so unpacking keeps pace with the
// network; Wait returns once the blob is committed (verified) or failed.
type download struct {
	desc ocispec.Descriptor

	mu      sync.Mutex
	cond    *sync.Cond
	data    content.ReadAtCloser // the ingest's data; nil when the blob existed
	written int64
	done    bool
	err     error
	existed bool
}

func newDownload(desc ocispec.Descriptor) *download {
	d := &download{desc: desc}
	d.cond = sync.NewCond(&d.mu)
	return d
}

// run fetches the blob into cs. It never returns before the download has
// ended one way or the other.
func (d *download) run(ctx context.Context, cs content.Store, f Fetcher, progress func(Progress)) {
	err := d.fetch(ctx, cs, f, progress)
	d.mu.Lock()
	d.done, d.err = true, err
	d.cond.Broadcast()
	d.mu.Unlock()
	st := StatusDone
	switch {
	case err != nil:
		st = StatusFailed
	case d.existed:
		st = StatusExists
	}
	progress(Progress{Kind: "layer", Digest: d.desc.Digest, Status: st, Offset: d.written, Total: d.desc.Size})
}

func (d *download) fetch(ctx context.Context, cs content.Store, f Fetcher, progress func(Progress)) error {
	w, err := cs.Writer(ctx, content.WithRef("layer-"+d.desc.Digest.String()), content.WithDescriptor(d.desc))
	if errdefs.IsAlreadyExists(err) {
		d.existed = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("layer %s: %w", d.desc.Digest, err)
	}
	defer w.Close()
	if err := w.Truncate(0); err != nil {
		return err
	}
	if o, ok := w.(content.DataOpener); ok {
		data, err := o.OpenData()
		if err != nil {
			return err
		}
		d.mu.Lock()
		d.data = data
		d.mu.Unlock()
	}
	rc, err := f.Fetch(ctx, d.desc)
	if err != nil {
		return fmt.Errorf("fetch layer %s: %w", d.desc.Digest, err)
	}
	defer rc.Close()
	if err := d.copy(w, rc, progress); err != nil {
		return fmt.Errorf("fetch layer %s: %w", d.desc.Digest, err)
	}
	if err := w.Commit(ctx, d.desc.Size, d.desc.Digest); err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("layer %s: %w", d.desc.Digest, err)
	}
	return nil
}

func (d *download) copy(w io.Writer, r io.Reader, progress func(Progress)) error {
	buf := make([]byte, 1<<20)
	var reported int64
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			d.mu.Lock()
			d.written += int64(n)
			written := d.written
			d.cond.Broadcast()
			d.mu.Unlock()
			if written-reported >= 4<<20 || written == d.desc.Size {
				progress(Progress{Kind: "layer", Digest: d.desc.Digest, Status: StatusDownloading, Offset: written, Total: d.desc.Size})
				reported = written
			}
			if written > d.desc.Size {
				return fmt.Errorf("the registry sent more than the %d bytes of the descriptor: %w", d.desc.Size, errdefs.ErrFailedPrecondition)
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// Wait blocks until the download ended and returns its error.
func (d *download) Wait() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for !d.done {
		d.cond.Wait()
	}
	return d.err
}

// Follow returns a reader of the blob's bytes as they arrive. It ends with
// the download's error if the download fails.
func (d *download) Follow(ctx context.Context, cs content.Store) (io.ReadCloser, error) {
	d.mu.Lock()
	for d.data == nil && !d.done {
		d.cond.Wait()
	}
	data, err := d.data, d.err
	d.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if data == nil { // the blob was there already, or the store cannot follow
		if err := d.Wait(); err != nil {
			return nil, err
		}
		ra, err := cs.ReaderAt(ctx, d.desc)
		if err != nil {
			return nil, err
		}
		return struct {
			io.Reader
			io.Closer
		}{io.NewSectionReader(ra, 0, ra.Size()), ra}, nil
	}
	return &follower{d: d}, nil
}

// follower reads a download's data file up to what has been written.
type follower struct {
	d   *download
	off int64
}

func (f *follower) Read(p []byte) (int, error) {
	d := f.d
	d.mu.Lock()
	for d.written <= f.off && !d.done {
		d.cond.Wait()
	}
	avail, done, err := d.written-f.off, d.done, d.err
	d.mu.Unlock()
	if avail <= 0 {
		if err != nil {
			return 0, err
		}
		if done {
			return 0, io.EOF
		}
	}
	n, rerr := d.data.ReadAt(p[:min(int64(len(p)), avail)], f.off)
	f.off += int64(n)
	if errors.Is(rerr, io.EOF) && n > 0 {
		rerr = nil
	}
	return n, rerr
}

// Close does nothing: the data file is the download's.
func (f *follower) Close() error { return nil }

// flights shares downloads of the same blob between concurrent pulls.
type flights struct {
	mu sync.Mutex
	m  map[digest.Digest]*flight
}

type flight struct {
	d      *download
	users  int
	cancel context.CancelFunc
}

func newFlights() *flights { return &flights{m: map[digest.Digest]*flight{}} }

// join returns the download of desc, starting it if nobody has; leave
// must be called when the caller is done with it. The download runs
// until every caller has left or it ends.
func (fs *flights) join(ctx context.Context, desc ocispec.Descriptor, start func(context.Context, *download)) (*download, func()) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fl, ok := fs.m[desc.Digest]
	if !ok {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		fl = &flight{d: newDownload(desc), cancel: cancel}
		fs.m[desc.Digest] = fl
		go func() {
			start(fctx, fl.d)
			fs.mu.Lock()
			if fs.m[desc.Digest] == fl {
				delete(fs.m, desc.Digest)
			}
			fs.mu.Unlock()
		}()
	}
	fl.users++
	var once sync.Once
	return fl.d, func() {
		once.Do(func() {
			fs.mu.Lock()
			fl.users--
			if fl.users == 0 {
				fl.cancel()
			}
			fs.mu.Unlock()
		})
	}
}
