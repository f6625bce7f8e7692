package metadata_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/content"
	"github.com/berth-dev/berth/content/local"
	"github.com/berth-dev/berth/events"
	"github.com/berth-dev/berth/metadata"
	"github.com/berth-dev/berth/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// published is one event seen by the recorder.
type published struct {
	Namespace string
	Topic     string
	Event     events.Event
}

// recorder is an events.Publisher that remembers what it was given.
type recorder struct {
	mu     sync.Mutex
	events []published
}

func (r *recorder) Publish(ctx context.Context, topic string, ev events.Event) error {
	ns, _ := namespaces.Namespace(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, published{Namespace: ns, Topic: topic, Event: ev})
	return nil
}

// take returns the events recorded since the last call.
func (r *recorder) take() []published {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

// env is one metadata database over a real local content store.
type env struct {
	db      *metadata.DB
	backend *local.Store
	root    string // the backend's root directory
	events  *recorder
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "content")
	backend, err := local.NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	db, err := metadata.Open(filepath.Join(dir, "meta.db"), backend, metadata.WithPublisher(rec))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &env{db: db, backend: backend, root: root, events: rec}
}

// nsCtx returns a context in namespace ns.
func nsCtx(ns string) context.Context {
	return namespaces.WithNamespace(context.Background(), ns)
}

// commit writes data through a writer on ref and commits it with labels.
func commit(t *testing.T, ctx context.Context, cs content.Store, ref string, data []byte, lbls map[string]string) digest.Digest {
	t.Helper()
	dgst := digest.FromBytes(data)
	w, err := cs.Writer(ctx, content.WithRef(ref))
	if err != nil {
		t.Fatalf("writer %q: %v", ref, err)
	}
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		t.Fatalf("write %q: %v", ref, err)
	}
	if err := w.Commit(ctx, int64(len(data)), dgst, content.WithLabels(lbls)); err != nil {
		t.Fatalf("commit %q: %v", ref, err)
	}
	return dgst
}

// readAll reads blob dgst through cs.
func readAll(ctx context.Context, cs content.Provider, dgst digest.Digest) ([]byte, error) {
	ra, err := cs.ReaderAt(ctx, ocispec.Descriptor{Digest: dgst})
	if err != nil {
		return nil, err
	}
	defer ra.Close()
	buf := make([]byte, ra.Size())
	if _, err := ra.ReadAt(buf, 0); err != nil {
		return nil, err
	}
	return buf, nil
}

// blobsOnDisk lists the digests of the files under the backend's blobs/,
// read straight from the filesystem.
func (e *env) blobsOnDisk(t *testing.T) []digest.Digest {
	t.Helper()
	var out []digest.Digest
	algs, err := os.ReadDir(filepath.Join(e.root, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range algs {
		files, err := os.ReadDir(filepath.Join(e.root, "blobs", alg.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			out = append(out, digest.NewDigestFromEncoded(digest.Algorithm(alg.Name()), f.Name()))
		}
	}
	slices.Sort(out)
	return out
}

// onDisk reports whether blob dgst is a file in the backend.
func (e *env) onDisk(t *testing.T, dgst digest.Digest) bool {
	t.Helper()
	return slices.Contains(e.blobsOnDisk(t), dgst)
}

// ingestsOnDisk counts the ingest directories of the backend.
func (e *env) ingestsOnDisk(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(e.root, "ingest"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, en := range entries {
		if !strings.HasPrefix(en.Name(), ".") {
			n++
		}
	}
	return n
}

// gc runs a collection and fails the test on error.
func (e *env) gc(t *testing.T) metadata.GCStats {
	t.Helper()
	st, err := e.db.GarbageCollect(context.Background())
	if err != nil {
		t.Fatalf("GarbageCollect: %v", err)
	}
	return st
}

// wantErr fails unless err is of class is and its message contains every
// one of parts.
func wantErr(t *testing.T, err error, is func(error) bool, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", parts)
	}
	if !is(err) {
		t.Errorf("error %q is of the wrong class", err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

// topics lists the topics of evs.
func topics(evs []published) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Topic)
	}
	return out
}

func isAlreadyExists(err error) bool  { return errdefs.IsAlreadyExists(err) }
func isNotFound(err error) bool       { return errdefs.IsNotFound(err) }
func isInvalid(err error) bool        { return errdefs.IsInvalidArgument(err) }
func isPrecondition(err error) bool   { return errdefs.IsFailedPrecondition(err) }
func isUnavailable(err error) bool    { return errdefs.IsUnavailable(err) }
func isNotImplemented(err error) bool { return errdefs.IsNotImplemented(err) }

// descOf is the descriptor of data.
func descOf(data []byte) ocispec.Descriptor {
	return ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}
}
