package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/remotes"
)

func randomBlob(t *testing.T, n int) blob {
	t.Helper()
	data := make([]byte, n)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	return newBlob(ocispec.MediaTypeImageLayerGzip, data)
}

// fetchBlob reads desc of app:1 from the fake registry at srvHost.
func fetchBlob(ctx context.Context, c *Client, srvHost string, desc ocispec.Descriptor) ([]byte, error) {
	f, err := c.Fetcher(ctx, srvHost+"/app:1")
	if err != nil {
		return nil, err
	}
	rc, err := f.Fetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestFetchResumesAfterCut(t *testing.T) {
	fake, srv := newFake(t)
	b := randomBlob(t, 256<<10)
	fake.addBlob(b)
	var cuts atomic.Int32
	var mu sync.Mutex
	var ranges []string
	fake.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.Contains(r.URL.Path, "/blobs/") {
			return false
		}
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		mu.Unlock()
		if cuts.Add(1) <= 3 { // three cuts in a row, each after some progress
			start := 0
			if rg := r.Header.Get("Range"); rg != "" {
				start, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"+strconv.Itoa(len(b.data)-1)))
				w.Header().Set("Content-Range", "bytes "+strconv.Itoa(start)+"-"+strconv.Itoa(len(b.data)-1)+"/"+strconv.Itoa(len(b.data)))
				w.Header().Set("Content-Length", strconv.Itoa(len(b.data)-start))
				w.WriteHeader(http.StatusPartialContent)
				_, _ = w.Write(b.data[start : start+10000])
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			}
			cutAfter(w, b.data, 50000)
		}
		return false
	})
	got, err := fetchBlob(context.Background(), fastClient(), hostOf(srv), b.desc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, b.data) {
		t.Fatalf("resumed read differs: %d bytes, want %d", len(got), len(b.data))
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"", "bytes=50000-262143", "bytes=60000-262143", "bytes=70000-262143"}
	if strings.Join(ranges, ",") != strings.Join(want, ",") {
		t.Errorf("Range headers %q, want %q", ranges, want)
	}
}

func TestFetchServerIgnoresRange(t *testing.T) {
	fake, srv := newFake(t)
	b := randomBlob(t, 100<<10)
	fake.addBlob(b)
	var calls atomic.Int32
	fake.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.Contains(r.URL.Path, "/blobs/") {
			return false
		}
		if calls.Add(1) == 1 {
			cutAfter(w, b.data, 30000)
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b.data))) // 200, whatever the Range
		_, _ = w.Write(b.data)
		return true
	})
	got, err := fetchBlob(context.Background(), fastClient(), hostOf(srv), b.desc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, b.data) {
		t.Fatalf("read after a 200 to a Range request differs: %d bytes", len(got))
	}
}

func TestFetchGivesUpWithoutProgress(t *testing.T) {
	fake, srv := newFake(t)
	b := randomBlob(t, 10000)
	fake.addBlob(b)
	var calls atomic.Int32
	fake.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if calls.Add(1) == 1 {
			cutAfter(w, b.data, 100)
		}
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	})
	_, err := fetchBlob(context.Background(), fastClient(WithRetries(2)), hostOf(srv), b.desc)
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "at byte 100 of 10000") {
		t.Fatalf("got %v, want Unavailable naming byte 100", err)
	}
}

func TestFetchSizeMismatch(t *testing.T) {
	fake, srv := newFake(t)
	b := randomBlob(t, 1000)
	fake.addBlob(b)
	ctx := context.Background()
	c := fastClient(WithRetries(1))
	host := hostOf(srv)

	short := b.desc
	short.Size = 999 // Content-Length says 1000
	if _, err := fetchBlob(ctx, c, host, short); !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "the descriptor says 999") {
		t.Errorf("Content-Length mismatch: got %v", err)
	}

	// Without Content-Length (chunked), too many bytes are caught at the end.
	fake.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		_, _ = w.Write(b.data[:500])
		w.(http.Flusher).Flush()
		_, _ = w.Write(b.data[500:])
		return true
	})
	got, err := fetchBlob(ctx, c, host, short)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "more than the descriptor's 999 bytes") {
		t.Errorf("extra bytes: got %v", err)
	}
	if len(got) != 999 {
		t.Errorf("returned %d bytes before the error, want 999", len(got))
	}

	// A body that always ends early is an error, never a short success.
	long := b.desc
	long.Size = 2000
	if _, err := fetchBlob(ctx, c, host, long); err == nil || !strings.Contains(err.Error(), "of 2000") {
		t.Errorf("short body: got %v", err)
	}
}

func TestFetchRange(t *testing.T) {
	fake, srv := newFake(t)
	b := randomBlob(t, 5000)
	fake.addBlob(b)
	ctx := context.Background()
	c := fastClient()
	f, err := c.Fetcher(ctx, hostOf(srv)+"/app:1")
	if err != nil {
		t.Fatal(err)
	}
	rf := f.(remotes.RangeFetcher)
	read := func(off, n int64) []byte {
		t.Helper()
		rc, err := rf.FetchRange(ctx, b.desc, off, n)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		got, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := read(1000, 300); !bytes.Equal(got, b.data[1000:1300]) {
		t.Errorf("range 1000+300: %d bytes, wrong content", len(got))
	}
	if got := read(4990, 10); !bytes.Equal(got, b.data[4990:]) {
		t.Errorf("range at the end: wrong content")
	}
	fake.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		_, _ = w.Write(b.data) // ignores Range
		return true
	})
	if got := read(2000, 100); !bytes.Equal(got, b.data[2000:2100]) {
		t.Errorf("range from a server ignoring Range: wrong content")
	}
	if _, err := rf.FetchRange(ctx, b.desc, 4990, 11); !errors.Is(err, errdefs.ErrOutOfRange) {
		t.Errorf("range past the end: %v", err)
	}
}

func TestFetchManifestUsesManifestsEndpoint(t *testing.T) {
	fake, srv := newFake(t)
	img := buildImage(t, "1")
	fake.addManifest("app", "1", img.index)
	ctx := context.Background()
	got := readAll(t, ctx, fastClient(), hostOf(srv)+"/app:1", img.index.desc)
	if !bytes.Equal(got, img.index.data) {
		t.Fatal("index differs")
	}
	reqs := fake.requests()
	if last := reqs[len(reqs)-1]; last != "GET /v2/app/manifests/"+img.index.desc.Digest.String() {
		t.Errorf("fetched with %q", last)
	}
}
