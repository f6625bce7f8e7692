package pull

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/berth-dev/berth/content"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// download is one layer blob arriving in the content store. Readers from
// Follow see its bytes as they land, so unpacking keeps pace with the
// network; Wait returns once the blob is committed (verified) or failed.
type download struct {
	desc ocispec.Descriptor

	mu   sync.Mutex
	cond *sync.Cond
	// data reads the ingest while it is written; nil when the blob existed
	// or the store cannot follow, and again once closed. It is closed when
	// the download has ended and no follower reads it any more.
	data    content.ReadAtCloser
	readers int
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

// existing returns the download, ended, of a blob the store holds.
func existing(desc ocispec.Descriptor) *download {
	d := newDownload(desc)
	d.existed, d.done = true, true
	return d
}

// run fetches the blob into cs. It never returns before the download has
// ended one way or the other.
func (d *download) run(ctx context.Context, cs content.Store, f Fetcher, progress func(Progress)) {
	err := d.fetch(ctx, cs, f, progress)
	d.finish(err)
	st := StatusDone
	switch {
	case err != nil:
		st = StatusFailed
	case d.existed:
		st = StatusExists
	}
	progress(Progress{Kind: "layer", Digest: d.desc.Digest, Status: st, Offset: d.written, Total: d.desc.Size})
}

// finish records the end of the download and wakes everyone waiting.
func (d *download) finish(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.done, d.err = true, err
	d.closeData()
	d.cond.Broadcast()
}

// closeData closes the data reader once nobody can need it; d.mu is held.
func (d *download) closeData() {
	if d.done && d.readers == 0 && d.data != nil {
		_ = d.data.Close()
		d.data = nil
	}
}

// wait blocks, with d.mu held, until ready() or ctx is done.
func (d *download) wait(ctx context.Context, ready func() bool) error {
	stop := context.AfterFunc(ctx, func() {
		d.mu.Lock()
		d.cond.Broadcast()
		d.mu.Unlock()
	})
	defer stop()
	for !ready() {
		if err := ctx.Err(); err != nil {
			return err
		}
		d.cond.Wait()
	}
	return nil
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
		d.cond.Broadcast()
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

// Wait blocks until the download ended and returns its error, or until
// ctx is done: a pull that gives up does not wait for a download that
// another pull shares.
func (d *download) Wait(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.wait(ctx, func() bool { return d.done }); err != nil {
		return err
	}
	return d.err
}

// Follow returns a reader of the blob's bytes as they arrive. It ends with
// the download's error if the download fails, and with ctx's once ctx is
// done. When the bytes can no longer be followed (the blob existed, the
// download has ended, or the store cannot read an ingest), the reader is
// the committed blob, opened by open once the download has ended.
func (d *download) Follow(ctx context.Context, open func() (content.ReaderAt, error)) (io.ReadCloser, error) {
	d.mu.Lock()
	err := d.wait(ctx, func() bool { return d.data != nil || d.done })
	if err == nil {
		err = d.err
	}
	if err != nil {
		d.mu.Unlock()
		return nil, err
	}
	if data := d.data; data != nil {
		d.readers++
		d.mu.Unlock()
		f := &follower{d: d, data: data}
		f.stop = context.AfterFunc(ctx, func() {
			d.mu.Lock()
			f.cancelled = ctx.Err()
			d.cond.Broadcast()
			d.mu.Unlock()
		})
		return f, nil
	}
	d.mu.Unlock()
	ra, err := open()
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(ra, 0, ra.Size()), ra}, nil
}

// follower reads a download's data file up to what has been written.
type follower struct {
	d    *download
	data content.ReadAtCloser
	off  int64
	stop func() bool
	// cancelled is the error of the follower's context once it is done;
	// guarded by d.mu.
	cancelled error
	closed    bool
}

func (f *follower) Read(p []byte) (int, error) {
	d := f.d
	d.mu.Lock()
	for d.written <= f.off && !d.done && f.cancelled == nil {
		d.cond.Wait()
	}
	avail, done, err := d.written-f.off, d.done, d.err
	if f.cancelled != nil {
		avail, err = 0, f.cancelled
	}
	d.mu.Unlock()
	if avail <= 0 {
		if err != nil {
			return 0, err
		}
		if done {
			return 0, io.EOF
		}
	}
	n, rerr := f.data.ReadAt(p[:min(int64(len(p)), avail)], f.off)
	f.off += int64(n)
	if errors.Is(rerr, io.EOF) && n > 0 {
		rerr = nil
	}
	return n, rerr
}

// Close releases the follower's hold on the download's data file.
func (f *follower) Close() error {
	f.stop()
	d := f.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if !f.closed {
		f.closed = true
		d.readers--
		d.closeData()
	}
	return nil
}
