package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/remotes/hosts"
)

// endpoint is one host serving one repository.
type endpoint struct {
	host   hosts.Host
	client *http.Client
	repo   *repository
}

// url builds the URL of an API path under the repository:
// <root>/<repo>/<parts...>, with the "ns" query a mirror needs.
func (e endpoint) url(parts ...string) string {
	u := e.host.URL() + "/" + e.repo.path + "/" + strings.Join(parts, "/")
	if e.isMirrorOf(e.repo.domain) {
		u += "?ns=" + url.QueryEscape(e.repo.domain)
	}
	return u
}

// isMirrorOf reports whether the host is another than the registry
// itself; Docker Hub's API host is registry-1.docker.io.
func (e endpoint) isMirrorOf(domain string) bool {
	if e.host.Host == domain {
		return false
	}
	return domain != "docker.io" || e.host.Host != "registry-1.docker.io"
}

// request is one API call. body, when set, opens the body anew for each
// attempt.
type request struct {
	method string
	url    string
	header http.Header
	body   func() io.ReadCloser
	size   int64
	scopes []string
	// once turns retries off, for requests the caller resumes itself.
	once bool
}

// eachHost runs fn on the hosts of repo that have caps, in order, until
// one succeeds. The error lists every host tried.
func (c *Client) eachHost(ctx context.Context, op string, repo *repository, caps hosts.Capabilities, fn func(endpoint) error) error {
	all, err := c.opts.hosts(repo.domain)
	if err != nil {
		return fmt.Errorf("%s %s: hosts of %s: %w", op, repo.name, repo.domain, err)
	}
	herr := &HostsError{Op: op, Ref: repo.name}
	for _, h := range all {
		if !h.Capabilities.Has(caps) {
			continue
		}
		e := endpoint{host: h, client: c.httpClient(h), repo: repo}
		err := fn(e)
		if err == nil {
			return nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("%s %s: %w", op, repo.name, ctxErr)
		}
		var final finalError
		if errors.As(err, &final) {
			return fmt.Errorf("%s %s: %w", op, repo.name, final.err)
		}
		url := attemptURL(h, h.HTTPFallback && c.fallback.isPlain(h.Host))
		herr.Attempts = append(herr.Attempts, Attempt{URL: url, Mirror: h.Mirror, Err: err})
		log.G(ctx).Info("registry host failed, trying the next one", "op", op, "ref", repo.name, "host", url, "error", err.Error())
	}
	if len(herr.Attempts) == 0 {
		return fmt.Errorf("%s %s: none of the %d hosts of %s may %s (see capabilities in hosts.toml): %w",
			op, repo.name, len(all), repo.domain, caps, errdefs.ErrNotFound)
	}
	return herr
}

// do sends r to e: with the host's headers and the User-Agent, authorized,
// once more after a 401 challenge, and retried on 429, 5xx and broken
// connections. The response may have any status; the caller reads it.
func (c *Client) do(ctx context.Context, e endpoint, r request) (*http.Response, error) {
	challenged := false
	retries := c.opts.retries
	if r.once {
		retries = 0
	}
	for attempt := 0; ; attempt++ {
		req, err := c.newRequest(ctx, e, r)
		if err != nil {
			return nil, err
		}
		if err := c.auth.Authorize(ctx, e.client, req, r.scopes); err != nil {
			return nil, err
		}
		resp, err := e.client.Do(req)
		if err != nil {
			if attempt < retries && retryableTransport(ctx, err) {
				log.G(ctx).Debug("registry request failed, retrying", "method", r.method, "url", r.url, "error", err)
				if err := c.sleep(ctx, attempt, 0); err != nil {
					return nil, err
				}
				continue
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, transportError{err}
		}
		if resp.StatusCode == http.StatusUnauthorized && !challenged {
			challenged = true
			if err := c.auth.Challenged(ctx, e.client, resp, r.scopes); err != nil {
				// The registry's words first, then why a second try cannot help.
				return nil, fmt.Errorf("%w: %w", responseError(resp, ""), err)
			}
			drain(resp)
			attempt-- // a challenge is not a failure
			continue
		}
		if attempt < retries && retryableStatus(resp.StatusCode) {
			wait := retryAfter(resp)
			drain(resp)
			log.G(ctx).Debug("registry busy, retrying", "method", r.method, "url", r.url, "status", resp.Status)
			if err := c.sleep(ctx, attempt, wait); err != nil {
				return nil, err
			}
			continue
		}
		return resp, nil
	}
}

func (c *Client) newRequest(ctx context.Context, e endpoint, r request) (*http.Request, error) {
	var body io.ReadCloser
	if r.body != nil {
		body = r.body()
	}
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, body)
	if err != nil {
		return nil, fmt.Errorf("request %s %s: %v: %w", r.method, r.url, err, errdefs.ErrInvalidArgument)
	}
	if r.body != nil {
		req.ContentLength = r.size
		req.GetBody = func() (io.ReadCloser, error) { return r.body(), nil }
		if r.size == 0 {
			req.Body = http.NoBody
		}
	}
	for k, v := range e.host.Header {
		req.Header[k] = append([]string(nil), v...)
	}
	for k, v := range r.header {
		req.Header[k] = append([]string(nil), v...)
	}
	req.Header.Set("User-Agent", c.opts.userAgent)
	return req, nil
}

// retryableTransport reports errors worth a second try on the same host:
// broken connections, not unreachable hosts (the next host is better).
func retryableTransport(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) || isPlainHTTPAnswer(err) {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED) || isTimeout(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func retryableStatus(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// retryAfter reads a Retry-After in seconds; 0 when absent.
func retryAfter(resp *http.Response) time.Duration {
	s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After")))
	if err != nil || s <= 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}

// sleep waits before retry number attempt+1: the backoff doubled per
// attempt with jitter, or the server's Retry-After when that is longer
// and within the largest backoff.
func (c *Client) sleep(ctx context.Context, attempt int, after time.Duration) error {
	d := c.opts.minBackoff << min(attempt, 20)
	if d > c.opts.maxBackoff || d <= 0 {
		d = c.opts.maxBackoff
	}
	d = d/2 + rand.N(d/2+1)
	if after > d && after <= c.opts.maxBackoff {
		d = after
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// drain reads a little of a response we are done with, so its connection
// can be reused, and closes it.
func drain(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
}
