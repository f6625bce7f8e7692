package registry

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/remotes/auth"
)

// tokenAuth makes a fake registry demand bearer tokens from a token
// server that knows one user (or, with user "", anyone).
type tokenAuth struct {
	srv       *httptest.Server
	user, pw  string
	issued    atomic.Int32
	mu        sync.Mutex
	scopesAsk []string
}

func newTokenAuth(t *testing.T, fake *fakeRegistry, user, pw string) *tokenAuth {
	ta := &tokenAuth{user: user, pw: pw}
	ta.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ta.user != "" {
			if u, p, ok := r.BasicAuth(); !ok || u != ta.user || p != ta.pw {
				http.Error(w, `{"details":"incorrect username or password"}`, http.StatusUnauthorized)
				return
			}
		}
		ta.mu.Lock()
		ta.scopesAsk = append(ta.scopesAsk, r.URL.Query()["scope"]...)
		ta.mu.Unlock()
		ta.issued.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"token": "good-token", "expires_in": 300})
	}))
	t.Cleanup(ta.srv.Close)
	fake.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") == "Bearer good-token" {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+ta.srv.URL+`/token",service="fake-registry",scope="repository:app:pull"`)
		writeRegistryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return true
	})
	return ta
}

func TestAnonymousToken(t *testing.T) {
	fake, srv := newFake(t)
	img := buildImage(t, "1")
	fake.addManifest("app", "1", img.index)
	fake.addBlob(img.layers[0])
	ta := newTokenAuth(t, fake, "", "")
	ctx := context.Background()
	c := fastClient()
	ref := hostOf(srv) + "/app:1"
	if _, _, err := c.Resolve(ctx, ref); err != nil {
		t.Fatal(err)
	}
	readAll(t, ctx, c, ref, img.layers[0].desc)
	readAll(t, ctx, c, ref, img.index.desc)
	if n := ta.issued.Load(); n != 1 {
		t.Errorf("%d tokens issued, want 1 (cached per scope)", n)
	}
	if ta.scopesAsk[0] != "repository:app:pull" {
		t.Errorf("scopes asked %q", ta.scopesAsk)
	}
	// The first request went out anonymous, then no more 401s.
	if reqs := fake.requests(); len(reqs) != 4 {
		t.Errorf("registry requests %q, want one 401 then three authorized", reqs)
	}
}

func TestTokenWithCredentials(t *testing.T) {
	fake, srv := newFake(t)
	img := buildImage(t, "1")
	fake.addManifest("app", "1", img.index)
	ta := newTokenAuth(t, fake, "alice", "s3cret")
	ctx := context.Background()
	ref := hostOf(srv) + "/app:1"
	good := fastClient(WithCredentials(auth.Static(hostOf(srv), "alice", "s3cret")))
	if _, _, err := good.Resolve(ctx, ref); err != nil {
		t.Fatal(err)
	}
	bad := fastClient(WithCredentials(auth.Static(hostOf(srv), "alice", "wrong")))
	_, _, err := bad.Resolve(ctx, ref)
	if !errors.Is(err, errdefs.ErrUnauthenticated) || !strings.Contains(err.Error(), "incorrect username or password") {
		t.Errorf("wrong password: %v", err)
	}
	_, _, err = fastClient().Resolve(ctx, ref)
	if !errors.Is(err, errdefs.ErrUnauthenticated) || !strings.Contains(err.Error(), "fetch token from "+ta.srv.URL+"/token") {
		t.Errorf("no credentials: %v", err)
	}
}

func TestBasicAuthRegistry(t *testing.T) {
	fake, srv := newFake(t)
	img := buildImage(t, "1")
	fake.addManifest("app", "1", img.index)
	var unauthorized atomic.Int32
	fake.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if u, p, ok := r.BasicAuth(); ok && u == "bob" && p == "pw" {
			return false
		}
		unauthorized.Add(1)
		w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
		writeRegistryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return true
	})
	ctx := context.Background()
	ref := hostOf(srv) + "/app:1"
	c := fastClient(WithCredentials(auth.Static(hostOf(srv), "bob", "pw")))
	for range 3 {
		if _, _, err := c.Resolve(ctx, ref); err != nil {
			t.Fatal(err)
		}
	}
	if n := unauthorized.Load(); n != 1 {
		t.Errorf("%d unauthorized answers, want 1 (basic sent up front after the first)", n)
	}
	_, _, err := fastClient().Resolve(ctx, ref)
	if !errors.Is(err, errdefs.ErrUnauthenticated) || !strings.Contains(err.Error(), "none are configured") {
		t.Errorf("no credentials: %v", err)
	}
}
