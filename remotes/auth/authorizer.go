// Package auth authenticates berth to registries as the distribution
// spec's token authentication describes, and keeps registry credentials.
//
// Lifecycle of an authenticated request, driven by the registry client:
//
//  1. Before sending, the client calls Authorizer.Authorize. For a host
//     that has not challenged yet it adds nothing: the first request goes
//     out anonymously.
//  2. A 401 answer carries WWW-Authenticate. The client hands the
//     response to Authorizer.Challenged, which remembers the host's scheme
//     and, for Bearer, fetches a token from the realm for the request's
//     scopes (with the host's credentials when there are any); then the
//     client sends the request once more, through Authorize again.
//  3. Later requests to that host are authorized up front: Basic with the
//     credentials, Bearer with a token cached per host and scope until
//     it expires (expires_in, 60 s when the server does not say).
//
// Tokens are fetched with GET realm?service=...&scope=..., with basic
// credentials when the host has a user and password. An identity token
// (Credentials with an empty user, docker's "identitytoken") is exchanged
// with an OAuth2 POST (grant_type=refresh_token), the only way token
// servers accept it. containerd POSTs user and password too and falls
// back to GET; berth does not, as GET with basic credentials is what
// every token server implements (distribution's spec) and one round trip
// fewer.
//
// Credentials come from a Credentials function: berth's own store (Store,
// written by `berth login`), docker's config.json (DockerConfig), or a
// Chain of them.
package auth

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
)

// Authorizer adds Authorization headers to registry requests. It is safe
// for concurrent use and shares tokens between requests.
type Authorizer struct {
	creds     Credentials
	userAgent string
	now       func() time.Time

	mu     sync.Mutex
	hosts  map[string]Challenge // host → the challenge it last sent
	tokens map[string]*token    // host + realm + service + scopes → token
}

// token is one cached bearer token; ready closes when the fetch is done.
type token struct {
	ready   chan struct{}
	value   string
	expires time.Time
	err     error
}

// Option configures an Authorizer.
type Option func(*Authorizer)

// WithUserAgent sets the User-Agent of token requests; Go's default
// otherwise.
func WithUserAgent(ua string) Option { return func(a *Authorizer) { a.userAgent = ua } }

// WithClock replaces time.Now, for tests of expiry.
func WithClock(now func() time.Time) Option { return func(a *Authorizer) { a.now = now } }

// NewAuthorizer returns an Authorizer using creds (nil: anonymous).
func NewAuthorizer(creds Credentials, opts ...Option) *Authorizer {
	a := &Authorizer{
		creds:  creds,
		now:    time.Now,
		hosts:  map[string]Challenge{},
		tokens: map[string]*token{},
	}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Authorize sets req's Authorization header for the host of its URL, if
// that host challenged before. scopes are the distribution scopes the
// request needs ("repository:library/busybox:pull"); client reaches the
// token realm.
func (a *Authorizer) Authorize(ctx context.Context, client *http.Client, req *http.Request, scopes []string) error {
	host := req.URL.Host
	a.mu.Lock()
	c, ok := a.hosts[host]
	a.mu.Unlock()
	if !ok {
		return nil
	}
	switch c.Scheme {
	case "basic":
		user, secret, err := a.credentials(host)
		if err != nil {
			return err
		}
		if secret != "" {
			req.Header.Set("Authorization", "Basic "+basicAuth(user, secret))
		}
	case "bearer":
		tok, err := a.token(ctx, client, host, c, scopes, false)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return nil
}

// Challenged handles a 401 response from host: it records the challenge
// and prepares the Authorization for a second attempt (a new token for
// Bearer). An error means a second attempt would fail the same way.
func (a *Authorizer) Challenged(ctx context.Context, client *http.Client, resp *http.Response, scopes []string) error {
	host := resp.Request.URL.Host
	challenges := ParseWWWAuthenticate(resp.Header.Values("WWW-Authenticate"))
	i := slices.IndexFunc(challenges, func(c Challenge) bool { return c.Scheme == "bearer" })
	if i < 0 {
		i = slices.IndexFunc(challenges, func(c Challenge) bool { return c.Scheme == "basic" })
	}
	if i < 0 {
		return fmt.Errorf("%s answered 401 without a Basic or Bearer challenge: %w", host, errdefs.ErrUnauthenticated)
	}
	c := challenges[i]
	a.mu.Lock()
	a.hosts[host] = c
	a.mu.Unlock()
	if c.Scheme == "basic" {
		_, secret, err := a.credentials(host)
		if err != nil {
			return err
		}
		if secret == "" {
			return fmt.Errorf("%s requires credentials (basic auth) and none are configured: %w", host, errdefs.ErrUnauthenticated)
		}
		if strings.HasPrefix(resp.Request.Header.Get("Authorization"), "Basic ") {
			return fmt.Errorf("%s rejected the configured credentials (basic auth): %w", host, errdefs.ErrUnauthenticated)
		}
		return nil
	}
	if c.Params["realm"] == "" {
		return fmt.Errorf("%s: bearer challenge without a realm: %w", host, errdefs.ErrUnauthenticated)
	}
	_, err := a.token(ctx, client, host, c, withChallengeScope(scopes, c), true)
	return err
}

// withChallengeScope adds the scopes the challenge asks for.
func withChallengeScope(scopes []string, c Challenge) []string {
	out := slices.Clone(scopes)
	for _, s := range strings.Fields(c.Params["scope"]) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func (a *Authorizer) credentials(host string) (string, string, error) {
	if a.creds == nil {
		return "", "", nil
	}
	user, secret, err := a.creds(host)
	if err != nil {
		return "", "", fmt.Errorf("credentials for %s: %w", host, err)
	}
	return user, secret, nil
}

func basicAuth(user, secret string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + secret))
}

// token returns a cached token for the scopes, or fetches one; fresh
// skips the cache (the last token was refused). Concurrent callers for
// the same key share one fetch.
func (a *Authorizer) token(ctx context.Context, client *http.Client, host string, c Challenge, scopes []string, fresh bool) (string, error) {
	sorted := slices.Clone(scopes)
	slices.Sort(sorted)
	key := strings.Join([]string{host, c.Params["realm"], c.Params["service"], strings.Join(sorted, " ")}, "\x00")
	a.mu.Lock()
	t, ok := a.tokens[key]
	if ok && !fresh {
		a.mu.Unlock()
		select {
		case <-t.ready:
		case <-ctx.Done():
			return "", ctx.Err()
		}
		if t.err == nil && a.now().Before(t.expires) {
			return t.value, nil
		}
		a.mu.Lock()
		if a.tokens[key] != t { // another caller is fetching anew
			a.mu.Unlock()
			return a.token(ctx, client, host, c, scopes, false)
		}
	}
	t = &token{ready: make(chan struct{})}
	a.tokens[key] = t
	a.mu.Unlock()

	t.value, t.expires, t.err = a.fetchToken(ctx, client, host, c, sorted)
	close(t.ready)
	if t.err != nil {
		a.mu.Lock()
		if a.tokens[key] == t {
			delete(a.tokens, key) // errors are not cached past the waiters
		}
		a.mu.Unlock()
	}
	return t.value, t.err
}
