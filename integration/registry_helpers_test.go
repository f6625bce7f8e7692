package integration

// Helpers of registry_test.go: a real docker-registry per test, images
// built offline as OCI layouts and pushed with skopeo, the berth CLI,
// hosts directories, and an HTTP proxy in front of a registry that
// serves what a test tells it to (a broken manifest, a slow blob, an API
// root under another path).

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
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
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// cliTimeout bounds one berth or skopeo command.
const cliTimeout = 60 * time.Second

// testRegistry is Debian's docker-registry (distribution 2.8) serving
// plain HTTP on 127.0.0.1, its storage in a t.TempDir(). It is killed,
// by its PID, at cleanup.
type testRegistry struct {
	t *testing.T
	// Addr is host:port, the registry part of references.
	Addr string
	// Storage is the filesystem driver's root directory.
	Storage string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// startRegistry starts a registry and waits until it answers /v2/. A
// missing binary fails the test: it is part of the test setup.
func startRegistry(t *testing.T) *testRegistry {
	t.Helper()
	requirements(t)
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Fatalf("docker-registry not found (%v): apt-get install docker-registry", err)
	}
	dir := t.TempDir()
	r := &testRegistry{t: t, Storage: filepath.Join(dir, "storage"), logPath: filepath.Join(dir, "registry.log")}
	// A free port may be taken between the probe and the registry's bind.
	for try := 0; ; try++ {
		if err = r.launch(bin, dir); err == nil {
			break
		}
		if try == 2 {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		<-r.exited
		if t.Failed() {
			t.Logf("registry %s log (tail):\n%s", r.Addr, tail(r.log(), 4<<10))
		}
	})
	return r
}

func (r *testRegistry) launch(bin, dir string) error {
	r.Addr = freeAddr(r.t)
	config := fmt.Sprintf(`version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, r.Storage, r.Addr)
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		return err
	}
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	r.cmd = exec.Command(bin, "serve", cfg)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("start docker-registry: %w", err)
	}
	r.exited = make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(r.exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-r.exited:
			return fmt.Errorf("docker-registry on %s exited during start-up:\n%s", r.Addr, r.log())
		default:
		}
		if resp, err := http.Get("http://" + r.Addr + "/v2/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			_ = r.cmd.Process.Kill()
			<-r.exited
			return fmt.Errorf("docker-registry did not serve %s within 15s:\n%s", r.Addr, r.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *testRegistry) log() string {
	b, _ := os.ReadFile(r.logPath)
	return string(b)
}

// ref is the reference of repoTag ("app:1") in this registry.
func (r *testRegistry) ref(repoTag string) string { return r.Addr + "/" + repoTag }

// blobData is the file in which the registry keeps blob dgst.
func (r *testRegistry) blobData(dgst digest.Digest) string {
	hex := dgst.Encoded()
	return filepath.Join(r.Storage, "docker", "registry", "v2", "blobs", dgst.Algorithm().String(), hex[:2], hex, "data")
}

// files lists every file of the registry's storage, with its size: a
// snapshot to compare before and after an operation.
func (r *testRegistry) files() map[string]int64 {
	r.t.Helper()
	files := map[string]int64{}
	err := filepath.WalkDir(r.Storage, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() {
			fi, err := e.Info()
			if err != nil {
				return err
			}
			files[strings.TrimPrefix(path, r.Storage)] = fi.Size()
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		r.t.Fatal(err)
	}
	return files
}

// manifestDigest asks the registry which manifest repo:tag names.
func (r *testRegistry) manifestDigest(repo, tag string) digest.Digest {
	r.t.Helper()
	req, err := http.NewRequest(http.MethodHead, "http://"+r.Addr+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Accept", strings.Join([]string{ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest,
		"application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json"}, ", "))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		r.t.Fatalf("HEAD %s:%s on %s: %s", repo, tag, r.Addr, resp.Status)
	}
	return digest.Digest(resp.Header.Get("Docker-Content-Digest"))
}

// freeAddr returns 127.0.0.1:PORT with nothing listening on PORT.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// regLayer is a layer blob with its descriptor and diff ID.
type regLayer struct {
	desc   ocispec.Descriptor
	blob   []byte
	diffID digest.Digest
}

// gzipLayer compresses the layer tar tarball. Every layer is gzipped:
// skopeo would compress an uncompressed one on its way to a registry,
// changing its digest.
func gzipLayer(t *testing.T, tarball []byte) regLayer {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(tarball); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return regLayer{
		desc:   descriptor(ocispec.MediaTypeImageLayerGzip, buf.Bytes()),
		blob:   buf.Bytes(),
		diffID: digest.FromBytes(tarball),
	}
}

// filesLayer is a small gzipped layer of regular files.
func filesLayer(t *testing.T, files map[string]string) regLayer {
	t.Helper()
	return gzipLayer(t, tarOf(t, files))
}

var busybox struct {
	once sync.Once
	tar  []byte
	err  error
}

// busyboxLayer is a layer of Debian's busybox-static: bin/busybox and
// the symlinks bin/sh, bin/ls, bin/cat, bin/echo to it.
func busyboxLayer(t *testing.T) regLayer {
	t.Helper()
	busybox.once.Do(func() { busybox.tar, busybox.err = busyboxTar() })
	if busybox.err != nil {
		t.Fatalf("busybox layer: %v (apt-get install busybox-static)", busybox.err)
	}
	return gzipLayer(t, busybox.tar)
}

func busyboxTar() ([]byte, error) {
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	hdrs := []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin)), ModTime: mtime},
	}
	for _, link := range []string{"sh", "ls", "cat", "echo"} {
		hdrs = append(hdrs, &tar.Header{Name: "bin/" + link, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: mtime})
	}
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(bin); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// chainIDs are the snapshot names of a stack of layers (the OCI image
// spec's ChainID), computed here rather than by the code under test.
func chainIDs(layers []regLayer) []string {
	out := make([]string, len(layers))
	var prev digest.Digest
	for i, l := range layers {
		if i == 0 {
			prev = l.diffID
		} else {
			prev = digest.FromString(prev.String() + " " + l.diffID.String())
		}
		out[i] = prev.String()
	}
	return out
}

// regImage is one image manifest written into a layout.
type regImage struct {
	manifest ocispec.Descriptor
	config   ocispec.Descriptor
	layers   []regLayer
}

// blobs are the digests of the image's manifest, config and layers.
func (m regImage) blobs() []string {
	out := []string{m.manifest.Digest.String(), m.config.Digest.String()}
	for _, l := range m.layers {
		out = append(out, l.desc.Digest.String())
	}
	return out
}

// ociLayout is an OCI image layout directory being written.
type ociLayout struct {
	t    *testing.T
	dir  string
	tags []ocispec.Descriptor
}

func newLayout(t *testing.T) *ociLayout {
	t.Helper()
	l := &ociLayout{t: t, dir: t.TempDir()}
	l.write(ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion":"1.0.0"}`))
	l.writeIndex()
	return l
}

func (l *ociLayout) write(name string, b []byte) {
	l.t.Helper()
	path := filepath.Join(l.dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		l.t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		l.t.Fatal(err)
	}
}

// blob stores b and returns its descriptor.
func (l *ociLayout) blob(mediaType string, b []byte) ocispec.Descriptor {
	l.t.Helper()
	desc := descriptor(mediaType, b)
	l.write(filepath.Join("blobs", desc.Digest.Algorithm().String(), desc.Digest.Encoded()), b)
	return desc
}

// image writes the config and manifest of an image for platform p.
func (l *ociLayout) image(p ocispec.Platform, layers ...regLayer) regImage {
	l.t.Helper()
	img := ocispec.Image{Platform: p, RootFS: ocispec.RootFS{Type: "layers"},
		Config: ocispec.ImageConfig{Entrypoint: []string{"/bin/sh"}}}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	for _, layer := range layers {
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, layer.diffID)
		m.Layers = append(m.Layers, l.blob(layer.desc.MediaType, layer.blob))
	}
	m.Config = l.blob(ocispec.MediaTypeImageConfig, mustJSON(l.t, img))
	desc := l.blob(ocispec.MediaTypeImageManifest, mustJSON(l.t, m))
	desc.Platform = &p
	return regImage{manifest: desc, config: m.Config, layers: layers}
}

// index writes an index of the manifests of imgs.
func (l *ociLayout) index(imgs ...regImage) ocispec.Descriptor {
	l.t.Helper()
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	for _, img := range imgs {
		idx.Manifests = append(idx.Manifests, img.manifest)
	}
	return l.blob(ocispec.MediaTypeImageIndex, mustJSON(l.t, idx))
}

// tag names desc tag in index.json, for skopeo's oci:DIR:TAG.
func (l *ociLayout) tag(tag string, desc ocispec.Descriptor) {
	l.t.Helper()
	desc.Platform = nil
	desc.Annotations = map[string]string{ocispec.AnnotationRefName: tag}
	l.tags = append(l.tags, desc)
	l.writeIndex()
}

func (l *ociLayout) writeIndex() {
	l.write("index.json", mustJSON(l.t, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex, Manifests: l.tags}))
}

// push copies tag of the layout to ref with skopeo, digests preserved.
func (l *ociLayout) push(tag, ref string) {
	l.t.Helper()
	skopeo(l.t, "copy", "--quiet", "--all", "--preserve-digests", "--dest-tls-verify=false",
		"oci:"+l.dir+":"+tag, "docker://"+ref)
}

// pushImage writes a one-platform image of layers (for the host's
// platform), tags it and pushes it to reg as repoTag ("app:1").
func pushImage(t *testing.T, reg *testRegistry, repoTag string, layers ...regLayer) regImage {
	t.Helper()
	l := newLayout(t)
	img := l.image(hostPlatform(), layers...)
	l.tag("t", img.manifest)
	l.push("t", reg.ref(repoTag))
	return img
}

func hostPlatform() ocispec.Platform {
	return ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// skopeo runs skopeo and fails the test unless it exits 0; it returns
// stdout.
func skopeo(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("skopeo")
	if err != nil {
		t.Fatalf("skopeo not found (%v): apt-get install skopeo", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--insecure-policy"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

var berthCLI struct {
	once sync.Once
	path string
	err  error
}

// berthBinary returns the berth CLI: $BERTH, or built from this tree next
// to the berthd that TestMain built (and removes).
func berthBinary(t *testing.T) string {
	t.Helper()
	berthCLI.once.Do(func() {
		if p := os.Getenv("BERTH"); p != "" {
			berthCLI.path = p
			return
		}
		berthCLI.path = filepath.Join(scratchDir, "berth-integration-cli")
		cmd := exec.Command("go", "build", "-o", berthCLI.path, "github.com/berth-dev/berth/cmd/berth")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			berthCLI.err = fmt.Errorf("build berth: %v\n%s", err, out)
		}
	})
	if berthCLI.err != nil {
		t.Fatal(berthCLI.err)
	}
	return berthCLI.path
}

// berthCmd is `berth --address SOCKET -n ns args...`.
func berthCmd(ctx context.Context, t *testing.T, d *daemon, ns string, args ...string) *exec.Cmd {
	t.Helper()
	return exec.CommandContext(ctx, berthBinary(t), append([]string{"--address", d.Address, "-n", ns}, args...)...)
}

// runBerthCLI runs the berth CLI against d in namespace ns.
func runBerthCLI(t *testing.T, d *daemon, ns string, args ...string) result {
	t.Helper()
	return runCmd(t, "berth "+strings.Join(args, " "), cliTimeout, nil, func(ctx context.Context) *exec.Cmd {
		return berthCmd(ctx, t, d, ns, args...)
	})
}

// mustBerthCLI runs berth and fails the test unless it exits 0.
func mustBerthCLI(t *testing.T, d *daemon, ns string, args ...string) string {
	t.Helper()
	r := runBerthCLI(t, d, ns, args...)
	if r.code != 0 {
		t.Fatalf("berth %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// berthCLIFails runs berth, fails the test unless it exits non-zero, and
// returns its stderr.
func berthCLIFails(t *testing.T, d *daemon, ns string, args ...string) string {
	t.Helper()
	r := runBerthCLI(t, d, ns, args...)
	if r.code == 0 {
		t.Fatalf("berth %s succeeded, want an error: %s", strings.Join(args, " "), r)
	}
	return r.stderr
}

// writeHosts writes toml as the hosts.toml of registryHost in the hosts
// directory dir.
func writeHosts(t *testing.T, dir, registryHost, toml string) {
	t.Helper()
	sub := filepath.Join(dir, registryHost)
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	// Written whole and renamed: berthd may read it at any moment.
	tmp := filepath.Join(sub, ".hosts.toml.tmp")
	if err := os.WriteFile(tmp, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(sub, "hosts.toml")); err != nil {
		t.Fatal(err)
	}
}

// faultProxy is an HTTP reverse proxy in front of a registry. By default
// it passes everything through; a test makes it serve a given manifest
// instead of the registry's, send a blob slowly, or serve the API under
// another root than /v2.
type faultProxy struct {
	srv  *httptest.Server
	Addr string

	mu sync.Mutex
	// manifests are served instead of the registry's: path → body.
	manifests map[string][]byte
	// slow is the blob sent at rate bytes per second.
	slow digest.Digest
	rate int64
	// root, when set, is the only API root served, in place of /v2.
	root string
}

func startProxy(t *testing.T, reg *testRegistry) *faultProxy {
	t.Helper()
	target := &url.URL{Scheme: "http", Host: reg.Addr}
	p := &faultProxy{manifests: map[string][]byte{}}
	rp := &httputil.ReverseProxy{
		Rewrite:        func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		ModifyResponse: p.modify,
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !p.route(r) {
			http.NotFound(w, r)
			return
		}
		if body, ok := p.manifest(r.URL.Path); ok {
			serveManifest(w, r, body)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	p.Addr = strings.TrimPrefix(p.srv.URL, "http://")
	return p
}

// route maps the configured API root to /v2; false: not served.
func (p *faultProxy) route(r *http.Request) bool {
	p.mu.Lock()
	root := p.root
	p.mu.Unlock()
	if root == "" {
		return true
	}
	rest, ok := strings.CutPrefix(r.URL.Path, root+"/")
	if !ok {
		return false
	}
	r.URL.Path, r.URL.RawPath = "/v2/"+rest, ""
	return true
}

// serveAt serves the API under root ("/some/path") instead of /v2.
func (p *faultProxy) serveAt(root string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.root = root
}

// fakeManifest serves body for repo's manifest tag and for its digest, as
// an OCI manifest.
func (p *faultProxy) fakeManifest(repo, tag string, body []byte) digest.Digest {
	p.mu.Lock()
	defer p.mu.Unlock()
	dgst := digest.FromBytes(body)
	p.manifests["/v2/"+repo+"/manifests/"+tag] = body
	p.manifests["/v2/"+repo+"/manifests/"+dgst.String()] = body
	return dgst
}

// clearFaults makes the proxy pass everything through.
func (p *faultProxy) clearFaults() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.manifests, p.slow, p.rate = map[string][]byte{}, "", 0
}

func (p *faultProxy) manifest(path string) ([]byte, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.manifests[path]
	return b, ok
}

func serveManifest(w http.ResponseWriter, r *http.Request, body []byte) {
	w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
	w.Header().Set("Docker-Content-Digest", digest.FromBytes(body).String())
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// throttle sends blob dgst at rate bytes per second.
func (p *faultProxy) throttle(dgst digest.Digest, rate int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.slow, p.rate = dgst, rate
}

func (p *faultProxy) modify(resp *http.Response) error {
	p.mu.Lock()
	slow, rate := p.slow, p.rate
	p.mu.Unlock()
	if slow != "" && strings.HasSuffix(resp.Request.URL.Path, "/blobs/"+slow.String()) {
		resp.Body = &slowBody{ReadCloser: resp.Body, ctx: resp.Request.Context(), rate: rate}
	}
	return nil
}

// slowBody reads at most rate bytes per second.
type slowBody struct {
	io.ReadCloser
	ctx  context.Context
	rate int64
}

func (b *slowBody) Read(p []byte) (int, error) {
	chunk := max(b.rate/20, 1) // 50 ms worth
	if int64(len(p)) > chunk {
		p = p[:chunk]
	}
	select {
	case <-time.After(time.Duration(int64(len(p)) * int64(time.Second) / b.rate)):
	case <-b.ctx.Done():
		return 0, b.ctx.Err()
	}
	return b.ReadCloser.Read(p)
}

// archive writes the layout as an OCI archive for `ctr images import`,
// with desc as the one image, named name.
func (l *ociLayout) archive(name string, desc ocispec.Descriptor) string {
	l.t.Helper()
	desc.Platform = nil
	desc.Annotations = map[string]string{
		"io.containerd.image.name": name,
		ocispec.AnnotationRefName:  name[strings.LastIndex(name, ":")+1:],
	}
	files := map[string]string{
		ocispec.ImageLayoutFile: `{"imageLayoutVersion":"1.0.0"}`,
		"index.json": string(mustJSON(l.t, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{desc}})),
	}
	blobs, err := filepath.Glob(filepath.Join(l.dir, "blobs", "sha256", "*"))
	if err != nil {
		l.t.Fatal(err)
	}
	for _, b := range blobs {
		data, err := os.ReadFile(b)
		if err != nil {
			l.t.Fatal(err)
		}
		files["blobs/sha256/"+filepath.Base(b)] = string(data)
	}
	path := filepath.Join(l.t.TempDir(), "image.tar")
	if err := os.WriteFile(path, tarOf(l.t, files), 0o644); err != nil {
		l.t.Fatal(err)
	}
	return path
}
