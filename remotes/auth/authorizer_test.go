package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// tokenServer counts token requests and hands out "tok-N".
type tokenServer struct {
	*httptest.Server
	calls     atomic.Int32
	expiresIn int
	mu        sync.Mutex
	last      *http.Request
	form      map[string][]string
	status    int
}

func newTokenServer(t *testing.T) *tokenServer {
	ts := &tokenServer{expiresIn: 300}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := ts.calls.Add(1)
		_ = r.ParseForm()
		ts.mu.Lock()
		ts.last, ts.form = r, r.PostForm
		status := ts.status
		ts.mu.Unlock()
		if status != 0 {
			http.Error(w, `{"details":"incorrect username or password"}`, status)
			return
		}
		key := "token"
		if r.Method == http.MethodPost {
			key = "access_token"
		}
		_ = json.NewEncoder(w).Encode(map[string]any{key: fmt.Sprintf("tok-%d", n), "expires_in": ts.expiresIn})
	}))
	t.Cleanup(ts.Close)
	return ts
}

func (ts *tokenServer) lastRequest() (*http.Request, map[string][]string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.last, ts.form
}

// challenge builds the 401 a registry at host answers.
func challenge(host, header string) *http.Response {
	req, _ := http.NewRequest(http.MethodGet, "https://"+host+"/v2/app/manifests/1", nil)
	resp := &http.Response{StatusCode: 401, Header: http.Header{}, Request: req}
	resp.Header.Set("WWW-Authenticate", header)
	return resp
}

func newRequest(host string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, "https://"+host+"/v2/app/manifests/1", nil)
	return req
}

func TestBearerTokenWithBasicCredentials(t *testing.T) {
	ts := newTokenServer(t)
	ctx := context.Background()
	a := NewAuthorizer(Static("reg.example.com", "alice", "s3cret"), WithUserAgent("berth/test"))
	scopes := []string{"repository:app:pull"}
	h := `Bearer realm="` + ts.URL + `/token",service="reg",scope="repository:app:pull"`
	if err := a.Challenged(ctx, ts.Client(), challenge("reg.example.com", h), scopes); err != nil {
		t.Fatal(err)
	}
	r, _ := ts.lastRequest()
	if r.Method != http.MethodGet || r.URL.Query().Get("service") != "reg" || r.URL.Query().Get("scope") != "repository:app:pull" || r.URL.Query().Get("account") != "alice" {
		t.Errorf("token request %s %s", r.Method, r.URL)
	}
	if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "s3cret" {
		t.Errorf("token request basic auth = %q %q %t", u, p, ok)
	}
	if ua := r.Header.Get("User-Agent"); ua != "berth/test" {
		t.Errorf("User-Agent = %q", ua)
	}
	for range 3 {
		req := newRequest("reg.example.com")
		if err := a.Authorize(ctx, ts.Client(), req, scopes); err != nil {
			t.Fatal(err)
		}
		if got := req.Header.Get("Authorization"); got != "Bearer tok-1" {
			t.Errorf("Authorization = %q, want Bearer tok-1", got)
		}
	}
	// Another scope on the same host is fetched up front, without a 401.
	req := newRequest("reg.example.com")
	if err := a.Authorize(ctx, ts.Client(), req, []string{"repository:other:pull"}); err != nil {
		t.Fatal(err)
	}
	if got := req.Header.Get("Authorization"); got != "Bearer tok-2" || ts.calls.Load() != 2 {
		t.Errorf("second scope: Authorization %q after %d token requests", got, ts.calls.Load())
	}
	// Another host has not challenged: nothing is sent to it.
	req = newRequest("other.example.com")
	_ = a.Authorize(ctx, ts.Client(), req, scopes)
	if got := req.Header.Get("Authorization"); got != "" {
		t.Errorf("unchallenged host got Authorization %q", got)
	}
}

func TestAnonymousTokenAndExpiry(t *testing.T) {
	ts := newTokenServer(t)
	ts.expiresIn = 100
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	a := NewAuthorizer(nil, WithClock(clock))
	ctx := context.Background()
	scopes := []string{"repository:app:pull"}
	h := `Bearer realm="` + ts.URL + `/token",service="reg"`
	if err := a.Challenged(ctx, ts.Client(), challenge("reg", h), scopes); err != nil {
		t.Fatal(err)
	}
	r, _ := ts.lastRequest()
	if r.Header.Get("Authorization") != "" || r.URL.Query().Has("account") {
		t.Errorf("anonymous token request carried credentials: %s %v", r.URL, r.Header)
	}
	authorize := func() string {
		req := newRequest("reg")
		if err := a.Authorize(ctx, ts.Client(), req, scopes); err != nil {
			t.Fatal(err)
		}
		return req.Header.Get("Authorization")
	}
	if got := authorize(); got != "Bearer tok-1" {
		t.Fatalf("got %q", got)
	}
	mu.Lock()
	now = now.Add(95 * time.Second) // past 90% of the lifetime
	mu.Unlock()
	if got := authorize(); got != "Bearer tok-2" {
		t.Fatalf("after expiry got %q, want a new token", got)
	}
}

func TestIdentityTokenIsExchangedByPOST(t *testing.T) {
	ts := newTokenServer(t)
	a := NewAuthorizer(Static("reg", "", "refresh-xyz"))
	h := `Bearer realm="` + ts.URL + `/token",service="reg"`
	if err := a.Challenged(context.Background(), ts.Client(), challenge("reg", h), []string{"repository:app:pull"}); err != nil {
		t.Fatal(err)
	}
	r, form := ts.lastRequest()
	if r.Method != http.MethodPost || form["grant_type"][0] != "refresh_token" || form["refresh_token"][0] != "refresh-xyz" || form["scope"][0] != "repository:app:pull" || form["service"][0] != "reg" {
		t.Errorf("refresh request %s %v", r.Method, form)
	}
	req := newRequest("reg")
	_ = a.Authorize(context.Background(), ts.Client(), req, []string{"repository:app:pull"})
	if got := req.Header.Get("Authorization"); got != "Bearer tok-1" {
		t.Errorf("Authorization = %q", got)
	}
}

func TestTokenServerRefuses(t *testing.T) {
	ts := newTokenServer(t)
	ts.status = http.StatusUnauthorized
	a := NewAuthorizer(Static("reg", "alice", "wrong"))
	h := `Bearer realm="` + ts.URL + `/token",service="reg"`
	err := a.Challenged(context.Background(), ts.Client(), challenge("reg", h), []string{"repository:app:pull"})
	if !errors.Is(err, errdefs.ErrUnauthenticated) || !strings.Contains(err.Error(), "incorrect username or password") || !strings.Contains(err.Error(), "401 Unauthorized") {
		t.Errorf("got %v, want Unauthenticated with the server's message", err)
	}
	// The failure is not cached: a working server is asked again.
	ts.mu.Lock()
	ts.status = 0
	ts.mu.Unlock()
	req := newRequest("reg")
	if err := a.Authorize(context.Background(), ts.Client(), req, []string{"repository:app:pull"}); err != nil || req.Header.Get("Authorization") == "" {
		t.Errorf("after recovery: %v, %q", err, req.Header.Get("Authorization"))
	}
}

func TestBasicChallenge(t *testing.T) {
	ctx := context.Background()
	a := NewAuthorizer(Static("reg", "bob", "pw"))
	if err := a.Challenged(ctx, nil, challenge("reg", `Basic realm="Registry"`), nil); err != nil {
		t.Fatal(err)
	}
	req := newRequest("reg")
	if err := a.Authorize(ctx, nil, req, nil); err != nil {
		t.Fatal(err)
	}
	if u, p, ok := req.BasicAuth(); !ok || u != "bob" || p != "pw" {
		t.Fatalf("basic auth = %q %q %t", u, p, ok)
	}
	// The same 401 to a request that carried the credentials: rejected.
	resp := challenge("reg", `Basic realm="Registry"`)
	resp.Request = req
	if err := a.Challenged(ctx, nil, resp, nil); !errors.Is(err, errdefs.ErrUnauthenticated) || !strings.Contains(err.Error(), "rejected") {
		t.Errorf("rejected credentials: got %v", err)
	}
	anon := NewAuthorizer(nil)
	if err := anon.Challenged(ctx, nil, challenge("reg", `Basic realm="Registry"`), nil); !errors.Is(err, errdefs.ErrUnauthenticated) || !strings.Contains(err.Error(), "none are configured") {
		t.Errorf("no credentials: got %v", err)
	}
	if err := anon.Challenged(ctx, nil, challenge("reg", `Digest realm="x"`), nil); !errors.Is(err, errdefs.ErrUnauthenticated) {
		t.Errorf("unsupported scheme: got %v", err)
	}
}

func TestConcurrentAuthorizeSharesOneFetch(t *testing.T) {
	ts := newTokenServer(t)
	a := NewAuthorizer(nil)
	ctx := context.Background()
	h := `Bearer realm="` + ts.URL + `/token",service="reg"`
	if err := a.Challenged(ctx, ts.Client(), challenge("reg", h), []string{"repository:warmup:pull"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := newRequest("reg")
			if err := a.Authorize(ctx, ts.Client(), req, []string{"repository:app:pull"}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := ts.calls.Load(); n != 2 {
		t.Errorf("%d token requests, want 2 (warm-up and one shared)", n)
	}
}
