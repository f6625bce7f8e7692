package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/content"
)

func TestWriterRequiresRef(t *testing.T) {
	_, err := newStore(t).Writer(context.Background())
	wantErr(t, "Writer without ref", err, errdefs.IsInvalidArgument, "ref must not be empty")
}

func TestWriterAlreadyExists(t *testing.T) {
	s := newStore(t)
	dgst := commitBlob(t, s, "first", "layer")

	_, err := s.Writer(context.Background(), content.WithRef("second"), content.WithDescriptor(descOf("layer")))
	wantErr(t, "Writer for existing blob", err, errdefs.IsAlreadyExists, "content "+dgst.String()+": already exists")
	if got := ingestEntries(t, s); len(got) != 0 {
		t.Errorf("ingest/ = %v, want empty", got)
	}
}

func TestCommitAlreadyExists(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	w1 := openWriter(t, s, "one", ocispec.Descriptor{})
	w2 := openWriter(t, s, "two", ocispec.Descriptor{})
	write(t, w1, "same")
	write(t, w2, "same")
	if err := w1.Commit(ctx, 4, digest.FromString("same")); err != nil {
		t.Fatal(err)
	}
	err := w2.Commit(ctx, 4, digest.FromString("same"))
	wantErr(t, "second Commit", err, errdefs.IsAlreadyExists, "already exists")

	if got := ingestEntries(t, s); len(got) != 0 {
		t.Errorf("ingest/ after commits = %v, want empty", got)
	}
	if err := w2.Close(); err != nil {
		t.Errorf("Close after Commit: %v", err)
	}
	// The ref is free again.
	openWriter(t, s, "two", ocispec.Descriptor{}).Close()
}

func TestCommitMismatchKeepsIngest(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	w := openWriter(t, s, "ref", ocispec.Descriptor{})
	defer w.Close()
	write(t, w, "hello")

	err := w.Commit(ctx, 6, "")
	wantErr(t, "Commit wrong size", err, errdefs.IsFailedPrecondition, "unexpected commit size 5, expected 6")

	want := digest.FromString("hellO")
	err = w.Commit(ctx, 0, want)
	wantErr(t, "Commit wrong digest", err, errdefs.IsFailedPrecondition,
		fmt.Sprintf("unexpected commit digest %s, expected %s", digest.FromString("hello"), want))

	st, err := s.Status(ctx, "ref")
	if err != nil || st.Offset != 5 {
		t.Fatalf("Status after failed commits = %+v, %v; want offset 5", st, err)
	}
	if err := w.Truncate(4); err != nil {
		t.Fatal(err)
	}
	write(t, w, "O")
	if err := w.Commit(ctx, 5, want); err != nil {
		t.Fatalf("Commit after Truncate: %v", err)
	}
	if got := readBlob(t, s, want); got != "hellO" {
		t.Errorf("blob = %q, want %q", got, "hellO")
	}
}

func TestTruncate(t *testing.T) {
	s := newStore(t)
	w := openWriter(t, s, "ref", ocispec.Descriptor{})
	defer w.Close()
	write(t, w, "hello world")

	wantErr(t, "Truncate beyond offset", w.Truncate(12), errdefs.IsInvalidArgument, "outside [0, 11]")
	for _, n := range []int{11, 5, 0} {
		if err := w.Truncate(int64(n)); err != nil {
			t.Fatalf("Truncate(%d): %v", n, err)
		}
		want := "hello world"[:n]
		if got := w.Digest(); got != digest.FromString(want) {
			t.Errorf("Digest after Truncate(%d) = %s, want digest of %q", n, got, want)
		}
		if st, _ := w.Status(); st.Offset != int64(n) {
			t.Errorf("Status().Offset after Truncate(%d) = %d", n, st.Offset)
		}
	}
	write(t, w, "bye")
	if err := w.Commit(context.Background(), 3, digest.FromString("bye")); err != nil {
		t.Fatal(err)
	}
}

func TestResumeAfterClose(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	desc := descOf("first half, second half")
	w := openWriter(t, s, "ref", desc)
	write(t, w, "first half, ")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	st, err := s.Status(ctx, "ref")
	if err != nil {
		t.Fatal(err)
	}
	if st.Ref != "ref" || st.Offset != 12 || st.Total != desc.Size || st.Expected != desc.Digest || st.StartedAt.IsZero() {
		t.Errorf("Status = %+v, want ref, offset 12, total %d, expected %s", st, desc.Size, desc.Digest)
	}

	w = openWriter(t, s, "ref", desc)
	defer w.Close()
	if got, _ := w.Status(); got.Offset != 12 || !got.StartedAt.Equal(st.StartedAt) {
		t.Errorf("resumed Status = %+v, want offset 12, StartedAt %v", got, st.StartedAt)
	}
	if got, want := w.Digest(), digest.FromString("first half, "); got != want {
		t.Errorf("resumed Digest = %s, want %s", got, want)
	}
	write(t, w, "second half")
	if err := w.Commit(ctx, desc.Size, desc.Digest); err != nil {
		t.Fatal(err)
	}
}

// TestResumeAfterCrash drops a writer without Close, appends to its data
// file behind its back, and resumes through a new Store on the same root,
// as after a SIGKILL.
func TestResumeAfterCrash(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	w := openWriter(t, s, "ref", ocispec.Descriptor{})
	t.Cleanup(func() { w.(*writer).f.Close() })
	write(t, w, "abc")

	data := filepath.Join(s.ingestDir("ref"), fileData)
	f, err := os.OpenFile(data, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("def"); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s2, err := NewStore(s.root)
	if err != nil {
		t.Fatal(err)
	}
	w2 := openWriter(t, s2, "ref", ocispec.Descriptor{})
	defer w2.Close()
	if st, _ := w2.Status(); st.Offset != 6 {
		t.Errorf("resumed offset = %d, want 6", st.Offset)
	}
	write(t, w2, "ghi")
	if err := w2.Commit(ctx, 9, digest.FromString("abcdefghi")); err != nil {
		t.Fatal(err)
	}
}

func TestResumeConflicts(t *testing.T) {
	s := newStore(t)
	openWriter(t, s, "sized", ocispec.Descriptor{Size: 10}).Close()
	_, err := s.Writer(context.Background(), content.WithRef("sized"),
		content.WithDescriptor(ocispec.Descriptor{Size: 11}))
	wantErr(t, "resume with other size", err, errdefs.IsFailedPrecondition, "recorded total 10 conflicts with descriptor size 11")

	a, b := digest.FromString("a"), digest.FromString("b")
	openWriter(t, s, "digested", ocispec.Descriptor{Digest: a}).Close()
	_, err = s.Writer(context.Background(), content.WithRef("digested"),
		content.WithDescriptor(ocispec.Descriptor{Digest: b}))
	wantErr(t, "resume with other digest", err, errdefs.IsFailedPrecondition, "recorded digest "+a.String())

	// A descriptor may add what the ingest did not record; the lock was
	// released by the failures above.
	w := openWriter(t, s, "sized", ocispec.Descriptor{Size: 10, Digest: b})
	w.Close()
	st, err := s.Status(context.Background(), "sized")
	if err != nil || st.Total != 10 || st.Expected != b {
		t.Errorf("Status = %+v, %v; want total 10, expected %s", st, err, b)
	}
}

func TestConcurrentWritersSameRef(t *testing.T) {
	s := newStore(t)
	const n = 8
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		writers []content.Writer
		errs    []error
	)
	for range n {
		wg.Go(func() {
			w, err := s.Writer(context.Background(), content.WithRef("shared"))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else {
				writers = append(writers, w)
			}
		})
	}
	wg.Wait()
	if len(writers) != 1 || len(errs) != n-1 {
		t.Fatalf("got %d writers and %d errors, want 1 and %d", len(writers), len(errs), n-1)
	}
	for _, err := range errs {
		wantErr(t, "second Writer", err, errdefs.IsUnavailable, `ref "shared" locked`)
	}
	writers[0].Close()
	openWriter(t, s, "shared", ocispec.Descriptor{}).Close()
}

func TestConcurrentCommitsSameContent(t *testing.T) {
	s := newStore(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			w, err := s.Writer(context.Background(), content.WithRef(fmt.Sprint("ref-", i)))
			if err != nil {
				t.Error(err)
				return
			}
			defer w.Close()
			if _, err := w.Write([]byte("payload")); err != nil {
				t.Error(err)
			}
			err = w.Commit(context.Background(), 7, digest.FromString("payload"))
			if err != nil && !errdefs.IsAlreadyExists(err) {
				t.Errorf("Commit: %v", err)
			}
		})
	}
	wg.Wait()
	if got := readBlob(t, s, digest.FromString("payload")); got != "payload" {
		t.Errorf("blob = %q", got)
	}
	if got := ingestEntries(t, s); len(got) != 0 {
		t.Errorf("ingest/ = %v, want empty", got)
	}
}

func TestClosedWriter(t *testing.T) {
	s := newStore(t)
	w := openWriter(t, s, "ref", ocispec.Descriptor{})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	_, err := w.Write([]byte("x"))
	wantErr(t, "Write after Close", err, errdefs.IsFailedPrecondition, "writer is closed")
	wantErr(t, "Commit after Close", w.Commit(context.Background(), 0, ""), errdefs.IsFailedPrecondition, "writer is closed")
}

func TestCommitOtherAlgorithm(t *testing.T) {
	s := newStore(t)
	w := openWriter(t, s, "ref", ocispec.Descriptor{})
	defer w.Close()
	write(t, w, "sha512 content")
	want := digest.SHA512.FromString("sha512 content")
	if err := w.Commit(context.Background(), 0, want); err != nil {
		t.Fatal(err)
	}
	if got := readBlob(t, s, want); got != "sha512 content" {
		t.Errorf("blob = %q", got)
	}
}

// TestGarbledIngestRestarts covers a crash that left the small files of
// an ingest empty: the next Writer on the ref starts afresh.
func TestGarbledIngestRestarts(t *testing.T) {
	s := newStore(t)
	w := openWriter(t, s, "ref", ocispec.Descriptor{})
	write(t, w, "lost")
	w.Close()
	for _, name := range []string{fileRef, fileTotal} {
		if err := os.WriteFile(filepath.Join(s.ingestDir("ref"), name), []byte("\x00"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.WalkIngests(func(ref string) error {
		t.Errorf("WalkIngests reported %q, want garbled ingest skipped", ref)
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	w = openWriter(t, s, "ref", ocispec.Descriptor{})
	defer w.Close()
	if st, _ := w.Status(); st.Offset != 0 {
		t.Errorf("offset of restarted ingest = %d, want 0", st.Offset)
	}
	write(t, w, "kept")
	if err := w.Commit(context.Background(), 4, digest.FromString("kept")); err != nil {
		t.Fatal(err)
	}
}
