package local

import (
	"context"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/content"
)

// TestLargeBlobStreams writes and reads 64 MiB and checks that neither
// direction allocates anything like the blob's size.
func TestLargeBlobStreams(t *testing.T) {
	const size = 64 << 20
	const maxAlloc = 4 << 20
	ctx := context.Background()
	s := newStore(t)
	source := func() io.Reader {
		return io.LimitReader(rand.NewChaCha8([32]byte{1}), size)
	}
	want := digest.Canonical.Digester()
	if _, err := io.Copy(want.Hash(), source()); err != nil {
		t.Fatal(err)
	}

	w, err := s.Writer(ctx, content.WithRef("large"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	allocated := allocatedBy(func() {
		if _, err = io.Copy(w, source()); err == nil {
			err = w.Commit(ctx, size, want.Digest())
		}
	})
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	if allocated > maxAlloc {
		t.Errorf("writing %d bytes allocated %d bytes, want at most %d", size, allocated, maxAlloc)
	}

	ra, err := s.ReaderAt(ctx, ocispec.Descriptor{Digest: want.Digest()})
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	got := digest.Canonical.Digester()
	allocated = allocatedBy(func() {
		_, err = io.Copy(got.Hash(), io.NewSectionReader(ra, 0, ra.Size()))
	})
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if got.Digest() != want.Digest() || ra.Size() != size {
		t.Errorf("read back %s of %d bytes, want %s of %d", got.Digest(), ra.Size(), want.Digest(), size)
	}
	if allocated > maxAlloc {
		t.Errorf("reading %d bytes allocated %d bytes, want at most %d", size, allocated, maxAlloc)
	}
}

// allocatedBy returns the bytes of heap that fn allocates.
func allocatedBy(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
