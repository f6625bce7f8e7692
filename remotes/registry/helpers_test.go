package registry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/remotes/hosts"
)

// fastClient is a Client with short backoffs, for tests.
func fastClient(opts ...Option) *Client {
	return New(append([]Option{WithBackoff(time.Millisecond, 20*time.Millisecond)}, opts...)...)
}

// hostsFor writes dir/<registryHost>/hosts.toml and returns its HostsFunc.
func hostsFor(t *testing.T, registryHost, content string) hosts.HostsFunc {
	t.Helper()
	dir := t.TempDir()
	ns := filepath.Join(dir, strings.ReplaceAll(registryHost, ":", "_")+"_")
	if !strings.Contains(registryHost, ":") {
		ns = filepath.Join(dir, registryHost)
	}
	if err := os.MkdirAll(ns, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ns, "hosts.toml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return hosts.ConfigureHosts(dir)
}

// hostOf is the host:port of a test server.
func hostOf(srv *httptest.Server) string {
	return strings.TrimPrefix(strings.TrimPrefix(srv.URL, "http://"), "https://")
}

// deadAddr is a local address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// logBuffer collects what the code under test logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logContext returns a context whose logger writes to the buffer.
func logContext(t *testing.T) (context.Context, *logBuffer) {
	b := &logBuffer{}
	l := slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return log.WithLogger(context.Background(), l), b
}

// blob is content with its descriptor.
type blob struct {
	desc ocispec.Descriptor
	data []byte
}

func newBlob(mediaType string, data []byte) blob {
	return blob{desc: ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}, data: data}
}

func jsonBlob(t *testing.T, mediaType string, v any) blob {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return newBlob(mediaType, b)
}

// testImage is a tiny OCI image for two platforms: one layer each, a
// config each, a manifest each, and the index over them.
type testImage struct {
	layers, configs, manifests []blob
	index                      blob
}

// children lists what an index push sends before the index, in order.
func (img testImage) children() []blob {
	var out []blob
	for i := range img.manifests {
		out = append(out, img.layers[i], img.configs[i], img.manifests[i])
	}
	return out
}

func buildImage(t *testing.T, tag string) testImage {
	t.Helper()
	var img testImage
	var entries []ocispec.Descriptor
	for _, arch := range []string{"amd64", "arm64"} {
		// A nonce makes every image new to the registry, which outlives a
		// test run (go test -count=N shares it).
		text := fmt.Sprintf("hello from %s %s %d\n", arch, tag, time.Now().UnixNano())
		layer := newBlob(ocispec.MediaTypeImageLayerGzip, tarGz(t, "hello.txt", text))
		cfg := jsonBlob(t, ocispec.MediaTypeImageConfig, ocispec.Image{
			Platform: ocispec.Platform{OS: "linux", Architecture: arch},
			RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layer.desc.Digest}},
		})
		m := jsonBlob(t, ocispec.MediaTypeImageManifest, ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			Config: cfg.desc, Layers: []ocispec.Descriptor{layer.desc},
		})
		img.layers, img.configs, img.manifests = append(img.layers, layer), append(img.configs, cfg), append(img.manifests, m)
		d := m.desc
		d.Platform = &ocispec.Platform{OS: "linux", Architecture: arch}
		entries = append(entries, d)
	}
	img.index = jsonBlob(t, ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: entries,
	})
	return img
}

func tarGz(t *testing.T, name, content string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(tw, content); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readAll fetches desc and checks its digest.
func readAll(t *testing.T, ctx context.Context, c *Client, ref string, desc ocispec.Descriptor) []byte {
	t.Helper()
	f, err := c.Fetcher(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := f.Fetch(ctx, desc)
	if err != nil {
		t.Fatalf("fetch %s: %v", desc.Digest, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", desc.Digest, err)
	}
	if got := digest.FromBytes(b); got != desc.Digest {
		t.Fatalf("fetched %s, want %s", got, desc.Digest)
	}
	return b
}

// recorder is a RoundTripper that records "METHOD path?query" lines.
type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	reqs []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	line := req.Method + " " + req.URL.Path
	if req.URL.RawQuery != "" {
		line += "?" + req.URL.RawQuery
	}
	r.reqs = append(r.reqs, line)
	r.mu.Unlock()
	return r.next.RoundTrip(req)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.reqs
	r.reqs = nil
	return out
}
