package registry

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// fakeRegistry serves manifests and blobs read-only, the way the
// distribution API does, for tests of what the client does with odd
// answers; pushes are tested against the real registry.
type fakeRegistry struct {
	mu        sync.Mutex
	manifests map[string]blob // "repo:tag" and "repo@digest"
	blobs     map[digest.Digest][]byte
	// hook sees each request first and may answer it (returns true).
	hook func(w http.ResponseWriter, r *http.Request) bool
	reqs []string
}

func newFake(t *testing.T) (*fakeRegistry, *httptest.Server) {
	f := &fakeRegistry{manifests: map[string]blob{}, blobs: map[digest.Digest][]byte{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeRegistry) addManifest(repo, tag string, b blob) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if tag != "" {
		f.manifests[repo+":"+tag] = b
	}
	f.manifests[repo+"@"+b.desc.Digest.String()] = b
}

func (f *fakeRegistry) addBlob(b blob) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blobs[b.desc.Digest] = b.data
}

func (f *fakeRegistry) setHook(h func(w http.ResponseWriter, r *http.Request) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = h
}

func (f *fakeRegistry) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

func (f *fakeRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	line := r.Method + " " + r.URL.Path
	if r.URL.RawQuery != "" {
		line += "?" + r.URL.RawQuery
	}
	f.reqs = append(f.reqs, line)
	hook := f.hook
	f.mu.Unlock()
	if hook != nil && hook(w, r) {
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/v2/")
	if i := strings.LastIndex(path, "/manifests/"); i > 0 {
		f.serveManifest(w, r, path[:i], path[i+len("/manifests/"):])
		return
	}
	if i := strings.LastIndex(path, "/blobs/"); i > 0 {
		f.serveBlob(w, r, digest.Digest(path[i+len("/blobs/"):]))
		return
	}
	writeRegistryError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry")
}

func (f *fakeRegistry) serveManifest(w http.ResponseWriter, r *http.Request, repo, ref string) {
	key := repo + ":" + ref
	if strings.Contains(ref, ":") {
		key = repo + "@" + ref
	}
	f.mu.Lock()
	b, ok := f.manifests[key]
	f.mu.Unlock()
	if !ok {
		writeRegistryError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
		return
	}
	w.Header().Set("Content-Type", b.desc.MediaType)
	w.Header().Set("Docker-Content-Digest", b.desc.Digest.String())
	w.Header().Set("Content-Length", strconv.Itoa(len(b.data)))
	if r.Method == http.MethodGet {
		_, _ = w.Write(b.data)
	}
}

func (f *fakeRegistry) serveBlob(w http.ResponseWriter, r *http.Request, d digest.Digest) {
	f.mu.Lock()
	data, ok := f.blobs[d]
	f.mu.Unlock()
	if !ok {
		writeRegistryError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
		return
	}
	w.Header().Set("Docker-Content-Digest", d.String())
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

func writeRegistryError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"errors":[{"code":"` + code + `","message":"` + msg + `","detail":null}]}`))
}

// cutAfter answers with the full Content-Length, sends only n bytes of
// data, and breaks the connection.
func cutAfter(w http.ResponseWriter, data []byte, n int) {
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data[:n])
	w.(http.Flusher).Flush()
	panic(http.ErrAbortHandler)
}
