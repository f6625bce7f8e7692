package registry

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	stdlog "log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/remotes/hosts"
)

func TestFallThroughDeadMirror(t *testing.T) {
	fake, srv := newFake(t)
	img := buildImage(t, "1")
	fake.addManifest("app", "1", img.index)
	fake.addBlob(img.layers[0])
	dead := deadAddr(t)
	registry := hostOf(srv)
	hf := hostsFor(t, registry, `
server = "http://`+registry+`"
[host."http://`+dead+`"]
  capabilities = ["pull", "resolve"]
`)
	ctx, logs := logContext(t)
	c := fastClient(WithHosts(hf))
	if _, desc, err := c.Resolve(ctx, registry+"/app:1"); err != nil || desc.Digest != img.index.desc.Digest {
		t.Fatalf("resolve through a dead mirror: %v", err)
	}
	if !strings.Contains(logs.String(), "trying the next one") || !strings.Contains(logs.String(), dead) {
		t.Errorf("fall-through not logged:\n%s", logs)
	}
	readAll(t, ctx, c, registry+"/app:1", img.layers[0].desc)

	_, _, err := c.Resolve(ctx, registry+"/app:2")
	want := "resolve " + registry + "/app:2: tried 2 hosts: http://" + dead + "/v2 (mirror): connect: connection refused; http://" + registry + "/v2: manifest unknown: not found"
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("%v is not NotFound", err)
	}
	var herr *HostsError
	if !errors.As(err, &herr) || len(herr.Attempts) != 2 || !herr.Attempts[0].Mirror {
		t.Errorf("no HostsError with 2 attempts in %v", err)
	}
}

func TestMirrorMissFallsToServer(t *testing.T) {
	mirror, msrv := newFake(t)
	upstream, usrv := newFake(t)
	img := buildImage(t, "1")
	upstream.addManifest("app", "1", img.index)
	registry := hostOf(usrv)
	hf := hostsFor(t, registry, `
[host."http://`+hostOf(msrv)+`"]
  capabilities = ["pull", "resolve"]
`)
	ctx := context.Background()
	c := fastClient(WithHosts(hf))
	if _, _, err := c.Resolve(ctx, registry+"/app:1"); err != nil {
		t.Fatal(err)
	}
	if reqs := mirror.requests(); len(reqs) != 1 || reqs[0] != "HEAD /v2/app/manifests/1?ns="+url.QueryEscape(registry) {
		t.Errorf("mirror requests %q", reqs)
	}
	if reqs := upstream.requests(); len(reqs) != 1 || strings.Contains(reqs[0], "ns=") {
		t.Errorf("server requests %q (no ns for the registry itself)", reqs)
	}
}

func TestCapabilitiesGateHosts(t *testing.T) {
	mirror, msrv := newFake(t)
	upstream, usrv := newFake(t)
	img := buildImage(t, "1")
	for _, f := range []*fakeRegistry{mirror, upstream} {
		f.addManifest("app", "1", img.index)
		f.addBlob(img.layers[0])
	}
	registry := hostOf(usrv)
	hf := hostsFor(t, registry, `
server = "http://`+registry+`"
[host."http://`+hostOf(msrv)+`"]
  capabilities = ["pull"]
`)
	ctx := context.Background()
	c := fastClient(WithHosts(hf))
	if _, _, err := c.Resolve(ctx, registry+"/app:1"); err != nil {
		t.Fatal(err)
	}
	if reqs := mirror.requests(); len(reqs) != 0 {
		t.Errorf("a pull-only mirror resolved a tag: %q", reqs)
	}
	readAll(t, ctx, c, registry+"/app:1", img.layers[0].desc)
	if reqs := mirror.requests(); len(reqs) != 1 || !strings.HasPrefix(reqs[0], "GET /v2/app/blobs/") {
		t.Errorf("blob not fetched from the pull mirror: %q", reqs)
	}
	if _, _, err := c.Resolve(ctx, registry+"/app@"+img.index.desc.Digest.String()); err != nil {
		t.Fatal(err)
	}
	if reqs := mirror.requests(); len(reqs) != 2 {
		t.Errorf("a digest was not resolved by the pull mirror: %q", reqs)
	}

	// Push: only the server, never the pull-only mirror.
	upstream.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/") {
			w.WriteHeader(http.StatusOK) // already there
			return true
		}
		return false
	})
	p, err := c.Pusher(ctx, registry+"/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Push(ctx, img.configs[0].desc, strings.NewReader(string(img.configs[0].data))); err != nil {
		t.Fatal(err)
	}
	for _, r := range mirror.requests() {
		if strings.Contains(r, "/uploads/") || strings.HasPrefix(r, "HEAD /v2/app/blobs/"+img.configs[0].desc.Digest.String()) {
			t.Errorf("push went to the pull-only mirror: %s", r)
		}
	}
}

func TestNoPushHost(t *testing.T) {
	_, srv := newFake(t)
	img := buildImage(t, "1")
	registry := hostOf(srv)
	ctx := context.Background()
	noPush := hostsFor(t, registry, `
server = "http://`+registry+`"
capabilities = ["pull", "resolve"]
`)
	p, _ := fastClient(WithHosts(noPush)).Pusher(ctx, registry+"/app:1")
	err := p.Push(ctx, img.configs[0].desc, strings.NewReader(string(img.configs[0].data)))
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "may push") {
		t.Errorf("no push host: %v", err)
	}
}

func TestOverridePathAndHeaders(t *testing.T) {
	img := buildImage(t, "1")
	var got *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		w.Header().Set("Content-Type", img.index.desc.MediaType)
		w.Header().Set("Docker-Content-Digest", img.index.desc.Digest.String())
		w.Header().Set("Content-Length", "1")
	}))
	t.Cleanup(srv.Close)
	hf := hostsFor(t, "registry.example.com", `
server = "http://`+deadAddr(t)+`"
[host."http://`+hostOf(srv)+`/custom/api"]
  capabilities = ["pull", "resolve"]
  override_path = true
  [host."http://`+hostOf(srv)+`/custom/api".header]
    x-mirror-token = "abc"
`)
	c := fastClient(WithHosts(hf), WithUserAgent("berth/test"))
	if _, _, err := c.Resolve(context.Background(), "registry.example.com/team/app:1"); err != nil {
		t.Fatal(err)
	}
	if got.URL.Path != "/custom/api/team/app/manifests/1" || got.URL.Query().Get("ns") != "registry.example.com" {
		t.Errorf("override_path request %s", got.URL)
	}
	if got.Header.Get("X-Mirror-Token") != "abc" || got.Header.Get("User-Agent") != "berth/test" {
		t.Errorf("headers %v", got.Header)
	}
	if !strings.Contains(got.Header.Get("Accept"), "application/vnd.oci.image.index.v1+json") {
		t.Errorf("Accept %q", got.Header.Get("Accept"))
	}
}

func TestTLSHostWithCA(t *testing.T) {
	fake := &fakeRegistry{manifests: map[string]blob{}}
	img := buildImage(t, "1")
	fake.addManifest("app", "1", img.index)
	srv := httptest.NewUnstartedServer(fake)
	srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	registry := "registry.example.com"
	withCA := hostsFor(t, registry, `server = "https://`+hostOf(srv)+`"`+"\nca = \""+ca+"\"\n")
	if _, _, err := fastClient(WithHosts(withCA)).Resolve(ctx, registry+"/app:1"); err != nil {
		t.Fatalf("with ca: %v", err)
	}
	withoutCA := hostsFor(t, registry, `server = "https://`+hostOf(srv)+`"`)
	_, _, err := fastClient(WithHosts(withoutCA)).Resolve(ctx, registry+"/app:1")
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without ca: %v, want a certificate error", err)
	}
}

func TestLocalhostFallsBackToPlainHTTP(t *testing.T) {
	fake, srv := newFake(t)
	img := buildImage(t, "1")
	fake.addManifest("app", "1", img.index)
	srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0) // the TLS probe
	ctx := context.Background()
	c := fastClient()
	if _, _, err := c.Resolve(ctx, hostOf(srv)+"/app:1"); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.Resolve(ctx, hostOf(srv)+"/app:missing")
	if err == nil || !strings.Contains(err.Error(), "http://"+hostOf(srv)+"/v2: manifest unknown") {
		t.Errorf("error should name the plain http URL: %v", err)
	}
}

func TestLiveHostsEdit(t *testing.T) {
	a, asrv := newFake(t)
	b, bsrv := newFake(t)
	img := buildImage(t, "1")
	a.addManifest("app", "1", img.index)
	b.addManifest("app", "1", img.index)
	dir := t.TempDir()
	ns := filepath.Join(dir, "registry.example.com")
	if err := os.MkdirAll(ns, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(addr string) {
		content := `server = "http://` + addr + `"`
		if err := os.WriteFile(filepath.Join(ns, "hosts.toml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := fastClient(WithHosts(hosts.ConfigureHosts(dir)))
	ctx := context.Background()
	write(hostOf(asrv))
	if _, _, err := c.Resolve(ctx, "registry.example.com/app:1"); err != nil {
		t.Fatal(err)
	}
	write(hostOf(bsrv))
	if _, _, err := c.Resolve(ctx, "registry.example.com/app:1"); err != nil {
		t.Fatal(err)
	}
	if len(a.requests()) != 1 || len(b.requests()) != 1 {
		t.Errorf("edit not picked up: a %q, b %q", a.requests(), b.requests())
	}
}
