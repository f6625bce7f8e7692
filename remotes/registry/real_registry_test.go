package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/remotes"
)

// The real peer: Debian's docker-registry (distribution 2.8), started once
// for the package's tests on 127.0.0.1 with its storage in a temp dir, and
// stopped by its PID when they end.
var realRegistry struct {
	once sync.Once
	addr string
	cmd  *exec.Cmd
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if cmd := realRegistry.cmd; cmd != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	if realRegistry.dir != "" {
		os.RemoveAll(realRegistry.dir)
	}
	os.Exit(code)
}

// startRegistry returns the address of the real registry, starting it on
// first use. A missing binary fails the test: make test's setup installs
// it.
func startRegistry(t *testing.T) string {
	t.Helper()
	realRegistry.once.Do(func() {
		for try := 0; try < 3; try++ { // a free port can be taken between probe and bind
			if realRegistry.err = launchRegistry(); realRegistry.err == nil {
				return
			}
		}
	})
	if realRegistry.err != nil {
		t.Fatal(realRegistry.err)
	}
	return realRegistry.addr
}

func launchRegistry() error {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return fmt.Errorf("the real registry is needed and its binary is missing: apt-get install docker-registry (make test's setup installs it): %v", err)
	}
	if realRegistry.dir == "" {
		if realRegistry.dir, err = os.MkdirTemp("", "berth-registry-"); err != nil {
			return err
		}
	}
	dir := realRegistry.dir
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := l.Addr().String()
	l.Close()
	config := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "storage"), addr)
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start docker-registry: %w", err)
	}
	if err := waitRegistry(addr, cmd); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		out, _ := os.ReadFile(logf.Name())
		return fmt.Errorf("docker-registry on %s: %v\n%s", addr, err, out)
	}
	realRegistry.addr, realRegistry.cmd = addr, cmd
	return nil
}

func waitRegistry(addr string, cmd *exec.Cmd) error {
	exited := make(chan error, 1)
	go func() { _, err := cmd.Process.Wait(); exited <- err }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("exited: %v", err)
		default:
		}
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("not answering /v2/ after 15s")
}

// pushImage pushes img's children and then its index under ref's tag.
func pushImage(t *testing.T, ctx context.Context, c *Client, ref string, img testImage, opts ...remotes.PushOpt) {
	t.Helper()
	p, err := c.Pusher(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range img.children() {
		if err := p.Push(ctx, b.desc, bytes.NewReader(b.data), opts...); err != nil {
			t.Fatalf("push %s %s: %v", b.desc.MediaType, b.desc.Digest, err)
		}
	}
	if err := p.Push(ctx, img.index.desc, bytes.NewReader(img.index.data), remotes.WithTag()); err != nil {
		t.Fatalf("push index: %v", err)
	}
}

// pullImage resolves ref and reads everything it points at, checking
// digests, the way a pull walks an image.
func pullImage(t *testing.T, ctx context.Context, c *Client, ref string, want testImage) {
	t.Helper()
	_, desc, err := c.Resolve(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != want.index.desc.Digest || desc.MediaType != ocispec.MediaTypeImageIndex || desc.Size != want.index.desc.Size {
		t.Fatalf("resolved %+v, want the index %s", desc, want.index.desc.Digest)
	}
	var index ocispec.Index
	if err := json.Unmarshal(readAll(t, ctx, c, ref, desc), &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 2 {
		t.Fatalf("index has %d manifests", len(index.Manifests))
	}
	for _, md := range index.Manifests {
		var m ocispec.Manifest
		if err := json.Unmarshal(readAll(t, ctx, c, ref, md), &m); err != nil {
			t.Fatal(err)
		}
		readAll(t, ctx, c, ref, m.Config)
		for _, l := range m.Layers {
			readAll(t, ctx, c, ref, l)
		}
	}
}

func count(reqs []string, prefix string) int {
	n := 0
	for _, r := range reqs {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

func TestRealRegistryPushPullMount(t *testing.T) {
	addr := startRegistry(t)
	ctx := context.Background()
	rec := &recorder{next: http.DefaultTransport.(*http.Transport).Clone()}
	c := fastClient(WithTransport(rec))
	img := buildImage(t, "app")
	ref := addr + "/berth/app:1"

	pushImage(t, ctx, c, ref, img)
	reqs := rec.take()
	if n := count(reqs, "PUT /v2/berth/app/blobs/uploads/"); n != 4 {
		t.Errorf("%d blob uploads, want 4 (2 layers, 2 configs):\n%s", n, strings.Join(reqs, "\n"))
	}
	pullImage(t, ctx, c, ref, img)

	// Range read of a layer, from the real registry.
	f, _ := c.Fetcher(ctx, ref)
	rc, err := f.(remotes.RangeFetcher).FetchRange(ctx, img.layers[0].desc, 10, 20)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(part, img.layers[0].data[10:30]) {
		t.Errorf("range read differs")
	}

	// Pushing again uploads nothing.
	rec.take()
	pushImage(t, ctx, c, ref, img)
	reqs = rec.take()
	if n := count(reqs, "POST") + count(reqs, "PATCH") + count(reqs, "PUT"); n != 0 {
		t.Errorf("second push sent content:\n%s", strings.Join(reqs, "\n"))
	}

	// A second repository mounts the blobs instead of uploading them.
	other := addr + "/berth/other:1"
	pushImage(t, ctx, c, other, img, remotes.WithMountFrom("berth/app"))
	reqs = rec.take()
	mount := "POST /v2/berth/other/blobs/uploads/?" + url.Values{"mount": {img.layers[0].desc.Digest.String()}, "from": {"berth/app"}}.Encode()
	if count(reqs, mount) != 1 || count(reqs, "PUT /v2/berth/other/blobs/") != 0 {
		t.Errorf("blobs not mounted:\n%s", strings.Join(reqs, "\n"))
	}
	pullImage(t, ctx, c, other, img)

	_, _, err = c.Resolve(ctx, addr+"/berth/app:missing")
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.HasSuffix(err.Error(), "http://"+addr+"/v2: manifest unknown: not found") {
		t.Errorf("missing tag: %v", err)
	}
	_, err = io.ReadAll(must(f.Fetch(ctx, randomBlob(t, 10).desc)))
	var herr *HostsError
	if !errors.As(err, &herr) || !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "blob unknown") {
		t.Errorf("missing blob: %v", err)
	}
}

// must turns Fetch's error into a reader that fails with it.
func must(rc io.ReadCloser, err error) io.Reader {
	if err != nil {
		return errReader{err}
	}
	return rc
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestRealRegistryChunkedUploadResumes(t *testing.T) {
	addr := startRegistry(t)
	target, _ := url.Parse("http://" + addr)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var patches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch && patches.Add(1) == 2 {
			_, _ = io.CopyN(io.Discard, r.Body, 100) // half a chunk, then the line drops
			panic(http.ErrAbortHandler)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	rec := &recorder{next: http.DefaultTransport.(*http.Transport).Clone()}
	c := fastClient(WithTransport(rec), WithChunkSize(4096))
	b := randomBlob(t, 5*4096+123)
	ref := hostOf(srv) + "/berth/chunked:1"
	p, _ := c.Pusher(ctx, ref)
	if err := p.Push(ctx, b.desc, bytes.NewReader(b.data)); err != nil {
		t.Fatal(err)
	}
	reqs := rec.take()
	if n := count(reqs, "PATCH"); n != 7 {
		t.Errorf("%d PATCH requests, want 7 (6 chunks, one sent twice):\n%s", n, strings.Join(reqs, "\n"))
	}
	if n := count(reqs, "GET /v2/berth/chunked/blobs/uploads/"); n != 1 {
		t.Errorf("%d upload status requests, want 1", n)
	}
	got := readAll(t, ctx, c, ref, b.desc)
	if !bytes.Equal(got, b.data) {
		t.Fatal("uploaded blob differs")
	}
}

func TestRealRegistryFallThrough(t *testing.T) {
	addr := startRegistry(t)
	ctx, logs := logContext(t)
	img := buildImage(t, "fall")
	plain := fastClient()
	pushImage(t, ctx, plain, addr+"/berth/fall:1", img)
	dead := deadAddr(t)
	hf := hostsFor(t, addr, `
server = "http://`+addr+`"
[host."http://`+dead+`"]
  capabilities = ["pull", "resolve"]
`)
	c := fastClient(WithHosts(hf))
	pullImage(t, ctx, c, addr+"/berth/fall:1", img)
	if !strings.Contains(logs.String(), dead) {
		t.Errorf("fall-through not logged")
	}
	_, _, err := c.Resolve(ctx, addr+"/berth/fall:2")
	want := "resolve " + addr + "/berth/fall:2: tried 2 hosts: http://" + dead + "/v2 (mirror): connect: connection refused; http://" + addr + "/v2: manifest unknown: not found"
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}
