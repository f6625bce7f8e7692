package registry

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestResolveHeadAndGetFallback(t *testing.T) {
	fake, srv := newFake(t)
	img := buildImage(t, "1")
	fake.addManifest("team/app", "1", img.index)
	ctx := context.Background()
	c := fastClient()
	ref := hostOf(srv) + "/team/app:1"

	name, desc, err := c.Resolve(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if name != ref || desc.Digest != img.index.desc.Digest || desc.Size != img.index.desc.Size || desc.MediaType != ocispec.MediaTypeImageIndex {
		t.Fatalf("HEAD: %s %+v", name, desc)
	}

	for _, tc := range []struct {
		name string
		head func(w http.ResponseWriter)
	}{
		{"405", func(w http.ResponseWriter) { w.WriteHeader(http.StatusMethodNotAllowed) }},
		{"no digest", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
			w.Header().Set("Content-Length", "10")
		}},
		{"generic type", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Docker-Content-Digest", img.index.desc.Digest.String())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake.setHook(func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method == http.MethodHead {
					tc.head(w)
					return true
				}
				if tc.name == "generic type" {
					w.Header().Set("Content-Type", "application/json")
					_, _ = w.Write(img.index.data)
					return true
				}
				return false
			})
			_, desc, err := c.Resolve(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest != img.index.desc.Digest || desc.Size != img.index.desc.Size || desc.MediaType != ocispec.MediaTypeImageIndex {
				t.Errorf("GET fallback: %+v", desc)
			}
		})
	}
}

func TestResolveByDigestAndNormalization(t *testing.T) {
	fake, srv := newFake(t)
	img := buildImage(t, "1")
	fake.addManifest("library/busybox", "latest", img.manifests[0])
	ctx := context.Background()
	hf := hostsFor(t, "docker.io", `
server = "http://`+deadAddr(t)+`"
[host."http://`+hostOf(srv)+`"]
  capabilities = ["pull", "resolve"]
`)
	c := fastClient(WithHosts(hf))
	name, desc, err := c.Resolve(ctx, "busybox")
	if err != nil {
		t.Fatal(err)
	}
	if name != "docker.io/library/busybox:latest" || desc.Digest != img.manifests[0].desc.Digest {
		t.Fatalf("got %s %s", name, desc.Digest)
	}
	reqs := fake.requests()
	if reqs[0] != "HEAD /v2/library/busybox/manifests/latest?ns=docker.io" {
		t.Errorf("mirror request %q, want the repository path and ns=docker.io", reqs[0])
	}
	byDigest := "busybox:ignored@" + img.manifests[0].desc.Digest.String()
	name, desc, err = c.Resolve(ctx, byDigest)
	if err != nil || desc.Digest != img.manifests[0].desc.Digest {
		t.Fatalf("by digest: %v %+v", err, desc)
	}
	if !strings.HasPrefix(name, "docker.io/library/busybox:ignored@sha256:") {
		t.Errorf("name %q", name)
	}
	if _, _, err := c.Resolve(ctx, "Not A Reference"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad reference: %v", err)
	}
}

func TestResolveRefusesSchema1(t *testing.T) {
	fake, srv := newFake(t)
	ctx := context.Background()
	c := fastClient()
	for _, tc := range []struct {
		name, contentType, body string
	}{
		{"prettyjws", mediaTypeDockerSchema1JWS, `{"schemaVersion":1,"name":"app","tag":"1","fsLayers":[]}`},
		{"v1+json", mediaTypeDockerSchema1, `{"schemaVersion":1}`},
		{"sniffed", "application/json", `{"schemaVersion":1,"name":"app","fsLayers":[{"blobSum":"sha256:a"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake.setHook(func(w http.ResponseWriter, r *http.Request) bool {
				w.Header().Set("Content-Type", tc.contentType)
				_, _ = w.Write([]byte(tc.body))
				return true
			})
			_, _, err := c.Resolve(ctx, hostOf(srv)+"/app:1")
			if !errors.Is(err, errdefs.ErrNotImplemented) || !strings.Contains(err.Error(), "schema 1") || !strings.Contains(err.Error(), "push it again") {
				t.Errorf("got %v, want a schema 1 refusal", err)
			}
		})
	}
}

func TestErrorMapping(t *testing.T) {
	fake, srv := newFake(t)
	ctx := context.Background()
	c := fastClient(WithRetries(0))
	for _, tc := range []struct {
		status     int
		code, msg  string
		class      error
		wantSuffix string
	}{
		{404, "MANIFEST_UNKNOWN", "manifest unknown", errdefs.ErrNotFound, ": manifest unknown: not found"},
		{401, "UNAUTHORIZED", "authentication required", errdefs.ErrUnauthenticated, ": unauthorized: authentication required"},
		{403, "DENIED", "requested access to the resource is denied", errdefs.ErrPermissionDenied, ": denied: requested access to the resource is denied: permission denied"},
		{400, "MANIFEST_INVALID", "manifest invalid", errdefs.ErrInvalidArgument, ": manifest invalid: invalid argument"},
		{400, "NAME_INVALID", "invalid repository name", errdefs.ErrInvalidArgument, ": name invalid: invalid repository name: invalid argument"},
		{429, "TOOMANYREQUESTS", "You have reached your pull rate limit.", errdefs.ErrUnavailable, ": toomanyrequests: You have reached your pull rate limit.: unavailable"},
		{503, "", "", errdefs.ErrUnavailable, ": 503 Service Unavailable"},
		{418, "", "", errdefs.ErrUnknown, ": 418 I'm a teapot: unknown"},
	} {
		fake.setHook(func(w http.ResponseWriter, r *http.Request) bool {
			if tc.code == "" {
				w.WriteHeader(tc.status)
				return true
			}
			if tc.status == 401 {
				w.Header().Set("WWW-Authenticate", `Basic realm="r"`)
			}
			writeRegistryError(w, tc.status, tc.code, tc.msg)
			return true
		})
		if tc.status == 401 {
			c = fastClient(WithRetries(0), WithCredentials(func(string) (string, string, error) { return "u", "p", nil }))
		}
		// A GET, since answers to HEAD have no body to tell the message.
		_, err := fetchBlob(ctx, c, hostOf(srv), randomBlob(t, 10).desc)
		if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), tc.wantSuffix) {
			t.Errorf("%d %s: got %q, want class %v and suffix %q", tc.status, tc.code, err, tc.class, tc.wantSuffix)
		}
		var regErr *Error
		if !errors.As(err, &regErr) || regErr.StatusCode != tc.status {
			t.Errorf("%d %s: no *Error with the status in %v", tc.status, tc.code, err)
		}
	}
}

func TestRetriesOn503(t *testing.T) {
	fake, srv := newFake(t)
	img := buildImage(t, "1")
	fake.addManifest("app", "1", img.index)
	var calls atomic.Int32
	fake.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if calls.Add(1) <= 2 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	ctx := context.Background()
	if _, desc, err := fastClient().Resolve(ctx, hostOf(srv)+"/app:1"); err != nil || desc.Digest != img.index.desc.Digest {
		t.Fatalf("after two 503: %v", err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
	calls.Store(0)
	_, _, err := fastClient(WithRetries(1)).Resolve(ctx, hostOf(srv)+"/app:1")
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("retries exhausted: %v, want Unavailable", err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("WithRetries(1): %d requests, want 2", n)
	}
}

func TestResolveDigestMismatchOnGet(t *testing.T) {
	fake, srv := newFake(t)
	img := buildImage(t, "1")
	fake.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return true
		}
		w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
		_, _ = w.Write(img.index.data) // not what the digest names
		return true
	})
	other := digest.FromString("something else")
	_, _, err := fastClient().Resolve(context.Background(), hostOf(srv)+"/app@"+other.String())
	if !errors.Is(err, errdefs.ErrDataLoss) {
		t.Errorf("got %v, want DataLoss", err)
	}
}
