package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/log"
)

// uploadChunks sends the blob in PATCH chunks. After a failed chunk it
// asks the registry how much of the session it holds and goes on from
// there, so a broken connection costs at most one chunk.
func (p *pusher) uploadChunks(ctx context.Context, e endpoint, desc ocispec.Descriptor, ra io.ReaderAt, loc *url.URL, scopes []string) error {
	var off int64
	failures := 0
	for off < desc.Size {
		n := min(p.c.opts.chunkSize, desc.Size-off)
		next, err := p.patch(ctx, e, loc, ra, off, n, scopes)
		if err == nil {
			loc, off, failures = next, off+n, 0
			continue
		}
		resync := errors.Is(err, errdefs.ErrUnavailable) || errors.Is(err, errdefs.ErrInvalidArgument) // broken, or 416
		if !resync || failures >= p.c.opts.retries || ctx.Err() != nil {
			return fmt.Errorf("upload %s at byte %d of %d: %w", desc.Digest, off, desc.Size, err)
		}
		failures++
		if err := p.c.sleep(ctx, failures-1, 0); err != nil {
			return err
		}
		got, next, serr := p.uploadStatus(ctx, e, loc, scopes)
		if serr != nil {
			return fmt.Errorf("upload %s at byte %d of %d: %v; then the session's status: %w", desc.Digest, off, desc.Size, err, serr)
		}
		log.G(ctx).Debug("upload resumed", "digest", desc.Digest, "offset", got, "error", err)
		loc, off = next, got
	}
	return p.finishUpload(ctx, e, desc, loc, scopes, emptyBody, 0)
}

// patch sends bytes [off, off+n) and returns the session's next location.
// It is not retried as a whole: the registry may hold part of it.
func (p *pusher) patch(ctx context.Context, e endpoint, loc *url.URL, ra io.ReaderAt, off, n int64, scopes []string) (*url.URL, error) {
	resp, err := p.c.do(ctx, e, request{
		method: http.MethodPatch, url: loc.String(), scopes: scopes, once: true,
		header: http.Header{
			"Content-Type":  {"application/octet-stream"},
			"Content-Range": {fmt.Sprintf("%d-%d", off, off+n-1)},
		},
		body: sectionBody(ra, off, n), size: n,
	})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusAccepted {
		return nil, responseError(resp, "blob upload")
	}
	drain(resp)
	return location(resp)
}

// uploadStatus asks how many bytes the session holds: its Range header,
// "0-<last byte>". distribution answers "0-0" for an empty session too;
// that is read as empty, since holding exactly one byte is the unlikely
// case (and costs one more resync when it happens).
func (p *pusher) uploadStatus(ctx context.Context, e endpoint, loc *url.URL, scopes []string) (int64, *url.URL, error) {
	resp, err := p.c.do(ctx, e, request{method: http.MethodGet, url: loc.String(), scopes: scopes})
	if err != nil {
		return 0, nil, err
	}
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		return 0, nil, responseError(resp, "blob upload")
	}
	drain(resp)
	next := loc
	if resp.Header.Get("Location") != "" {
		if next, err = location(resp); err != nil {
			return 0, nil, err
		}
	}
	r := resp.Header.Get("Range")
	if r == "" {
		return 0, next, nil
	}
	_, last, ok := strings.Cut(strings.TrimPrefix(r, "bytes="), "-")
	end, err := strconv.ParseInt(last, 10, 64)
	if !ok || err != nil || end < -1 {
		return 0, nil, fmt.Errorf("upload status Range %q: %w", r, errdefs.ErrUnknown)
	}
	if r == "0-0" || r == "bytes=0-0" {
		return 0, next, nil
	}
	return end + 1, next, nil
}
