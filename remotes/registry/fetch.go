package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/remotes"
	"github.com/berth-dev/berth/remotes/hosts"
)

// fetcher reads manifests and blobs of one repository.
type fetcher struct {
	c    *Client
	repo *repository
}

var (
	_ remotes.Fetcher      = (*fetcher)(nil)
	_ remotes.RangeFetcher = (*fetcher)(nil)
)

// Fetch opens desc: manifests (by media type) from the manifests
// endpoint, everything else from blobs. The reader yields exactly
// desc.Size bytes, reconnecting with Range requests when a connection
// breaks; it does not check the digest.
func (f *fetcher) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	return f.open(ctx, desc, 0, desc.Size, true)
}

// FetchRange opens bytes [offset, offset+length) of desc.
func (f *fetcher) FetchRange(ctx context.Context, desc ocispec.Descriptor, offset, length int64) (io.ReadCloser, error) {
	if offset < 0 || length < 0 || offset+length > desc.Size || offset+length < offset {
		return nil, fmt.Errorf("range %d+%d of %s (%d bytes): %w", offset, length, desc.Digest, desc.Size, errdefs.ErrOutOfRange)
	}
	return f.open(ctx, desc, offset, offset+length, false)
}

// open finds a host that serves the range [start, end) of desc and
// returns a reader bound to that host.
func (f *fetcher) open(ctx context.Context, desc ocispec.Descriptor, start, end int64, whole bool) (io.ReadCloser, error) {
	if err := desc.Digest.Validate(); err != nil || desc.Size < 0 {
		return nil, fmt.Errorf("fetch %q (%d bytes): not a valid descriptor: %w", desc.Digest, desc.Size, errdefs.ErrInvalidArgument)
	}
	if start == end {
		return io.NopCloser(strings.NewReader("")), nil
	}
	repo := *f.repo
	repo.name = repo.domain + "/" + repo.path + "@" + desc.Digest.String()
	var rr *rangeReader
	err := f.c.eachHost(ctx, "pull", &repo, hosts.CapPull, func(e endpoint) error {
		r := &rangeReader{
			// The reader's Read has no context: the open closure carries
			// the caller's, as an http.Request body does.
			open:    func(from int64) (io.ReadCloser, error) { return f.openAt(ctx, e, desc, from, end, whole) },
			sleep:   func(n int) error { return f.c.sleep(ctx, n, 0) },
			retries: f.c.opts.retries,
			what:    desc.Digest.String(),
			pos:     start, end: end, whole: whole,
		}
		body, err := r.open(start)
		if err != nil {
			return err
		}
		r.body, rr = body, r
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rr, nil
}

// openAt sends a GET for [from, end) of desc and returns the body
// positioned at from: a 206 as it is, a 200 (a server ignoring Range)
// past its first from bytes.
func (f *fetcher) openAt(ctx context.Context, e endpoint, desc ocispec.Descriptor, from, end int64, whole bool) (io.ReadCloser, error) {
	kind, what := "blobs", "blob"
	hdr := http.Header{}
	if isManifest(desc.MediaType) {
		kind, what = "manifests", "manifest"
		hdr.Set("Accept", desc.MediaType+", "+manifestAccept)
	}
	if from > 0 || end < desc.Size {
		hdr.Set("Range", fmt.Sprintf("bytes=%d-%d", from, end-1))
	}
	resp, err := f.c.do(ctx, e, request{
		method: http.MethodGet, url: e.url(kind, desc.Digest.String()), header: hdr,
		scopes: []string{scope(e.repo.path, "pull")},
	})
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if resp.ContentLength >= 0 && resp.ContentLength != desc.Size {
			resp.Body.Close()
			return nil, fmt.Errorf("%s %s is %d bytes, the descriptor says %d: %w", what, desc.Digest, resp.ContentLength, desc.Size, errdefs.ErrFailedPrecondition)
		}
		if from > 0 {
			log.G(ctx).Debug("registry ignored Range, skipping", "digest", desc.Digest, "bytes", from)
			if _, err := io.CopyN(io.Discard, resp.Body, from); err != nil {
				resp.Body.Close()
				return nil, transportError{err}
			}
		}
		return resp.Body, nil
	case http.StatusPartialContent:
		first, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || first != from || (total >= 0 && total != desc.Size) {
			resp.Body.Close()
			return nil, fmt.Errorf("%s %s: asked for bytes %d-%d of %d, got Content-Range %q: %w",
				what, desc.Digest, from, end-1, desc.Size, resp.Header.Get("Content-Range"), errdefs.ErrFailedPrecondition)
		}
		return resp.Body, nil
	}
	return nil, responseError(resp, what)
}

// parseContentRange reads "bytes first-last/total"; total is -1 for "*".
func parseContentRange(s string) (first, total int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	span, size, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	firstS, _, found := strings.Cut(span, "-")
	if !found {
		return 0, 0, false
	}
	first, err := strconv.ParseInt(firstS, 10, 64)
	if err != nil || first < 0 {
		return 0, 0, false
	}
	if size == "*" {
		return first, -1, true
	}
	total, err = strconv.ParseInt(size, 10, 64)
	return first, total, err == nil
}

// rangeReader reads [pos, end) of one blob from one host, reconnecting
// with a Range request after a broken connection or a short body. It
// gives up after retries reconnections in a row that brought no byte.
type rangeReader struct {
	open     func(from int64) (io.ReadCloser, error)
	sleep    func(attempt int) error
	retries  int
	what     string
	body     io.ReadCloser
	pos, end int64
	whole    bool // the body must end at end: more bytes are an error
	failures int
	lastErr  error
	err      error
}

func (r *rangeReader) Read(p []byte) (int, error) {
	for {
		if r.err != nil {
			return 0, r.err
		}
		if r.pos == r.end {
			r.err = r.finish()
			continue
		}
		if r.body == nil {
			r.reconnect()
			continue
		}
		if rem := r.end - r.pos; int64(len(p)) > rem {
			p = p[:rem]
		}
		n, err := r.body.Read(p)
		r.pos += int64(n)
		if n > 0 {
			r.failures = 0
		}
		if err != nil && (err != io.EOF || r.pos < r.end) {
			r.broken(err)
		}
		if n > 0 || len(p) == 0 {
			return n, nil
		}
	}
}

// broken drops the connection after err; the next Read reconnects.
func (r *rangeReader) broken(err error) {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF // the body ended before its size
	}
	r.body.Close()
	r.body = nil
	r.lastErr = transportError{err}
	r.failures++
}

// reconnect opens the rest of the range, after a backoff; it sets r.err
// when retrying is over or cannot help.
func (r *rangeReader) reconnect() {
	if r.failures > r.retries {
		r.err = fmt.Errorf("read %s: connection lost at byte %d of %d, %d reconnections failed: %w",
			r.what, r.pos, r.end, r.retries, r.lastErr)
		return
	}
	if err := r.sleep(r.failures - 1); err != nil {
		r.err = err
		return
	}
	body, err := r.open(r.pos)
	switch {
	case err == nil:
		r.body = body
	case errors.Is(err, errdefs.ErrUnavailable):
		r.lastErr = err
		r.failures++
	default:
		r.err = fmt.Errorf("read %s: reconnect at byte %d: %w", r.what, r.pos, err)
	}
}

// finish closes the body at the end of the range and, for a whole blob,
// makes sure the registry had no more to send.
func (r *rangeReader) finish() error {
	if r.body == nil {
		return io.EOF
	}
	defer func() { r.body.Close(); r.body = nil }()
	if r.whole {
		var one [1]byte
		if n, _ := io.ReadFull(r.body, one[:]); n > 0 {
			return fmt.Errorf("read %s: the registry sent more than the descriptor's %d bytes: %w", r.what, r.end, errdefs.ErrFailedPrecondition)
		}
	}
	return io.EOF
}

// Close releases the connection.
func (r *rangeReader) Close() error {
	if r.body != nil {
		r.body.Close()
		r.body = nil
	}
	if r.err == nil {
		r.err = errors.New("read after close")
	}
	return nil
}
