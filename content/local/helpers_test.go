package local

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/content"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := NewStore(filepath.Join(t.TempDir(), "content"))
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	return s
}

func descOf(data string) ocispec.Descriptor {
	return ocispec.Descriptor{Digest: digest.FromString(data), Size: int64(len(data))}
}

func openWriter(t *testing.T, s *Store, ref string, desc ocispec.Descriptor) content.Writer {
	t.Helper()
	w, err := s.Writer(context.Background(), content.WithRef(ref), content.WithDescriptor(desc))
	if err != nil {
		t.Fatalf("Writer(%q): %v", ref, err)
	}
	return w
}

func write(t *testing.T, w content.Writer, data string) {
	t.Helper()
	if n, err := io.WriteString(w, data); err != nil || n != len(data) {
		t.Fatalf("Write(%q) = %d, %v; want %d, nil", data, n, err, len(data))
	}
}

// commitBlob writes data through a new ingest ref and commits it.
func commitBlob(t *testing.T, s *Store, ref, data string) digest.Digest {
	t.Helper()
	w := openWriter(t, s, ref, descOf(data))
	defer w.Close()
	write(t, w, data)
	d := descOf(data)
	if err := w.Commit(context.Background(), d.Size, d.Digest); err != nil {
		t.Fatalf("Commit(%q): %v", ref, err)
	}
	return d.Digest
}

func readBlob(t *testing.T, s *Store, dgst digest.Digest) string {
	t.Helper()
	ra, err := s.ReaderAt(context.Background(), ocispec.Descriptor{Digest: dgst})
	if err != nil {
		t.Fatalf("ReaderAt(%s): %v", dgst, err)
	}
	defer ra.Close()
	b, err := io.ReadAll(io.NewSectionReader(ra, 0, ra.Size()))
	if err != nil {
		t.Fatalf("read %s: %v", dgst, err)
	}
	return string(b)
}

// wantErr fails unless err is of the class is and its message contains msg.
func wantErr(t *testing.T, what string, err error, is func(error) bool, msg string) {
	t.Helper()
	if err == nil || !is(err) {
		t.Fatalf("%s: got error %v, want one of class %s", what, err, funcName(is))
	}
	if !strings.Contains(err.Error(), msg) {
		t.Fatalf("%s: got error %q, want it to contain %q", what, err, msg)
	}
}

func funcName(is func(error) bool) string {
	name := runtime.FuncForPC(reflect.ValueOf(is).Pointer()).Name()
	return strings.TrimPrefix(name, "github.com/containerd/errdefs.Is")
}

// ingestEntries lists the names under root/ingest.
func ingestEntries(t *testing.T, s *Store) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.root, "ingest"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
