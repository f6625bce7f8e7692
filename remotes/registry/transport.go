package registry

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/berth-dev/berth/remotes/hosts"
)

// maxTransports bounds the transport cache; past it the cache starts
// afresh.
const maxTransports = 64

// transportKey is what makes two hosts need different transports.
type transportKey struct {
	tls         *tls.Config
	dialTimeout time.Duration
	proxy       string
	fallback    bool
}

// httpClient returns the client for h, built once per distinct TLS,
// dial and proxy settings so that connections are reused across calls.
// hosts shares *tls.Config values while the files are unchanged.
func (c *Client) httpClient(h hosts.Host) *http.Client {
	key := transportKey{tls: h.TLS, dialTimeout: h.DialTimeout, fallback: h.HTTPFallback}
	if h.Proxy != nil {
		key.proxy = h.Proxy.String()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if hc, ok := c.transport[key]; ok {
		return hc
	}
	rt := c.opts.transport
	if base, ok := rt.(*http.Transport); ok && (h.TLS != nil || h.DialTimeout > 0 || h.Proxy != nil) {
		t := base.Clone()
		if h.TLS != nil {
			t.TLSClientConfig = h.TLS.Clone()
		}
		if h.DialTimeout > 0 {
			t.DialContext = (&net.Dialer{Timeout: h.DialTimeout, KeepAlive: 30 * time.Second}).DialContext
		}
		if h.Proxy != nil {
			t.Proxy = http.ProxyURL(h.Proxy)
		}
		rt = t
	}
	if h.HTTPFallback {
		rt = &fallbackTransport{next: rt, memory: c.fallback}
	}
	if len(c.transport) >= maxTransports { // TLS files edited many times over
		for k, old := range c.transport {
			old.CloseIdleConnections()
			delete(c.transport, k)
		}
	}
	hc := &http.Client{Transport: rt}
	c.transport[key] = hc
	return hc
}

// httpFallback remembers the hosts that answered an https handshake in
// plain HTTP: a registry on localhost:5000 without TLS, for one.
type httpFallback struct {
	mu    sync.Mutex
	plain map[string]bool
}

func newHTTPFallback() *httpFallback { return &httpFallback{plain: map[string]bool{}} }

func (f *httpFallback) isPlain(host string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.plain[host]
}

func (f *httpFallback) setPlain(host string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.plain[host] = true
}

// fallbackTransport tries https first and, when the server answers the
// handshake in plain HTTP, sends the request again in plain http; later
// requests to that host go in plain http directly. Only this one error
// falls back: a certificate problem stays an error.
type fallbackTransport struct {
	next   http.RoundTripper
	memory *httpFallback
}

func (t *fallbackTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" {
		return t.next.RoundTrip(req)
	}
	if !t.memory.isPlain(req.URL.Host) {
		resp, err := t.next.RoundTrip(req)
		if err == nil || !isPlainHTTPAnswer(err) || (req.Body != nil && req.GetBody == nil) {
			return resp, err
		}
		t.memory.setPlain(req.URL.Host)
	}
	plain := req.Clone(req.Context())
	plain.URL.Scheme = "http"
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		plain.Body = body
	}
	return t.next.RoundTrip(plain)
}

// isPlainHTTPAnswer reports a TLS handshake answered with "HTTP/...".
func isPlainHTTPAnswer(err error) bool {
	var rh tls.RecordHeaderError
	return errors.As(err, &rh) && string(rh.RecordHeader[:]) == "HTTP/"
}
