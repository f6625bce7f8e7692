// Package registry is berth's client of the OCI distribution API: it
// resolves references, fetches manifests and blobs, and pushes them. It
// implements remotes.Resolver.
//
// Every operation asks the HostsFunc (remotes/hosts, containerd's
// hosts.toml) which hosts serve the reference's registry, at each call,
// and tries them in order, skipping hosts without the capability the
// operation needs: resolving a tag needs pull and resolve, resolving a
// digest or fetching needs pull, pushing needs push. A host that misses
// (404) or fails is logged and the next one is tried; when all fail, the
// error (a *HostsError) lists every host tried and why.
//
// Requests are retried, with exponential backoff, on 429 and 5xx answers
// and on broken connections; a host that cannot be reached at all is not
// retried but left for the next one. A blob being read that loses its
// connection is resumed with an HTTP Range request, transparently. A
// mirror is sent the registry's name in the "ns" query parameter, as
// containerd does, so that one mirror can serve several registries.
//
// Registry errors keep the registry's own message and map to errdefs
// classes: *_UNKNOWN to NotFound, UNAUTHORIZED to Unauthenticated, DENIED
// to PermissionDenied, *_INVALID to InvalidArgument, TOOMANYREQUESTS and
// 5xx to Unavailable.
package registry

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/remotes"
	"github.com/berth-dev/berth/remotes/auth"
	"github.com/berth-dev/berth/remotes/hosts"
	"github.com/berth-dev/berth/version"
)

// Client talks to registries. It is safe for concurrent use; tokens and
// connections are shared between its operations.
type Client struct {
	opts      options
	auth      *auth.Authorizer
	fallback  *httpFallback
	mu        sync.Mutex
	transport map[transportKey]*http.Client
}

var _ remotes.Resolver = (*Client)(nil)

// options are the settings of a Client, set by Options.
type options struct {
	hosts      hosts.HostsFunc
	creds      auth.Credentials
	transport  http.RoundTripper
	userAgent  string
	retries    int
	minBackoff time.Duration
	maxBackoff time.Duration
	chunkSize  int64
}

// Option sets a Client option.
type Option func(*options)

// WithHosts sets where the hosts of a registry come from. Default:
// hosts.DefaultHosts, the registry itself (registry-1.docker.io for
// docker.io); the daemon passes hosts.ConfigureHosts of its certs.d.
func WithHosts(h hosts.HostsFunc) Option { return func(o *options) { o.hosts = h } }

// WithCredentials sets the credentials presented to registries and token
// servers. Default: none, anonymous access.
func WithCredentials(c auth.Credentials) Option { return func(o *options) { o.creds = c } }

// WithTransport sets the base HTTP transport. Default: a clone of
// http.DefaultTransport (proxy from the environment, 30 s connect
// timeout, HTTP/2). Per-host TLS, dial timeout and proxy from hosts.toml
// are applied to clones of it when it is an *http.Transport; another
// RoundTripper is used as it is.
func WithTransport(rt http.RoundTripper) Option { return func(o *options) { o.transport = rt } }

// WithUserAgent sets the User-Agent header. Default: "berth/<version>".
func WithUserAgent(ua string) Option { return func(o *options) { o.userAgent = ua } }

// WithRetries sets how many times a failed request (429, 5xx, broken
// connection) is retried on the same host, and how many reconnections a
// read may make without progress. Default: 3.
func WithRetries(n int) Option { return func(o *options) { o.retries = max(n, 0) } }

// WithBackoff sets the first and the largest wait between retries; the
// wait doubles each time, with jitter, and a Retry-After up to max is
// honored. Default: 200 ms and 5 s.
func WithBackoff(first, most time.Duration) Option {
	return func(o *options) { o.minBackoff, o.maxBackoff = first, max(first, most) }
}

// WithChunkSize makes blob uploads larger than n bytes go in PATCH chunks
// of n bytes, resumable after a broken connection. Default: 0, one
// monolithic PUT per blob.
func WithChunkSize(n int64) Option { return func(o *options) { o.chunkSize = n } }

// DefaultUserAgent is "berth/" and berth's own version.
func DefaultUserAgent() string {
	v := version.Version
	if _, own, ok := strings.Cut(v, "+berth."); ok {
		v = own
	}
	return "berth/" + v
}

// New returns a Client.
func New(opts ...Option) *Client {
	o := options{
		hosts:      hosts.DefaultHosts,
		userAgent:  DefaultUserAgent(),
		retries:    3,
		minBackoff: 200 * time.Millisecond,
		maxBackoff: 5 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.transport == nil {
		o.transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	return &Client{
		opts:      o,
		auth:      auth.NewAuthorizer(o.creds, auth.WithUserAgent(o.userAgent)),
		fallback:  newHTTPFallback(),
		transport: map[transportKey]*http.Client{},
	}
}

// Fetcher returns a Fetcher for ref's repository. It also implements
// remotes.RangeFetcher.
func (c *Client) Fetcher(ctx context.Context, ref string) (remotes.Fetcher, error) {
	repo, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	return &fetcher{c: c, repo: repo}, nil
}

// Pusher returns a Pusher for ref's repository and tag.
func (c *Client) Pusher(ctx context.Context, ref string) (remotes.Pusher, error) {
	repo, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	return &pusher{c: c, repo: repo}, nil
}

// CloseIdleConnections closes the idle connections of every transport,
// for tests and for a daemon reloading its configuration.
func (c *Client) CloseIdleConnections() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, hc := range c.transport {
		hc.CloseIdleConnections()
	}
}
