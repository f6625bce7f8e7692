package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
)

// registry is Debian's docker-registry serving a storage dir on loopback.
type registry struct {
	host    string // 127.0.0.1:PORT
	storage string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// startRegistry serves storage on a free loopback port.
func startRegistry(ctx context.Context, binary, dir string) (*registry, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	r := &registry{host: "127.0.0.1:" + strconv.Itoa(port), storage: filepath.Join(dir, "storage"), exited: make(chan struct{})}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, r.storage, r.host)
	path := filepath.Join(dir, "config.yml")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close() // the child has its own copy
	r.cmd = exec.Command(binary, "serve", path)
	r.cmd.Stdout, r.cmd.Stderr = log, log
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	go func() { _ = r.cmd.Wait(); close(r.exited) }()
	if err := r.waitReady(ctx); err != nil {
		r.stop()
		return nil, fmt.Errorf("%w; see %s", err, log.Name())
	}
	return r, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (r *registry) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + r.host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-r.exited:
			return fmt.Errorf("registry exited before serving")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("registry on %s not ready after %s", r.host, readyTimeout)
}

func (r *registry) stop() {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(stopGrace):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
}

// ref is the reference img has in this registry.
func (r *registry) ref(img *image) string { return r.host + "/" + img.Repo + ":" + img.Tag }

// push copies the OCI layout of img into the registry with skopeo; blobs
// already there are skipped by skopeo itself.
func (r *registry) push(ctx context.Context, skopeo, layout string, img *image) error {
	cmd := exec.CommandContext(ctx, skopeo, "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
		"oci:"+layout+":"+img.Tag, "docker://"+r.ref(img))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("skopeo copy %s: %w: %s", img.Key, err, out)
	}
	return nil
}

// blobFile is where the registry's filesystem driver keeps blob d.
func (r *registry) blobFile(d digest.Digest) string {
	enc := d.Encoded()
	return filepath.Join(r.storage, "docker", "registry", "v2", "blobs", d.Algorithm().String(), enc[:2], enc, "data")
}

// settle writes back dirty pages, so that no timed step pays for the
// writeback of the one before, and with drop also drops the page cache,
// dentries and inodes.
func settle(drop bool) error {
	syscall.Sync()
	if !drop {
		return nil
	}
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200)
}

// warm reads files into the page cache: the registry's blobs (so the
// "network" serves from memory, as a registry cache would) and the client
// binaries, the same for every daemon.
func warm(paths ...string) error {
	buf := make([]byte, 1<<20)
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		for err == nil {
			_, err = f.Read(buf)
		}
		f.Close()
		if err != io.EOF {
			return fmt.Errorf("warm %s: %w", p, err)
		}
	}
	return nil
}
