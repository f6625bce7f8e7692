package compression

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/gzip"
)

func TestDetectCompression(t *testing.T) {
	tests := []struct {
		name string
		peek []byte
		want Compression
	}{
		{"empty", nil, Uncompressed},
		{"tar", []byte("etc/\x00\x00\x00"), Uncompressed},
		{"gzip", []byte{0x1f, 0x8b, 0x08, 0x00}, Gzip},
		{"gzip short", []byte{0x1f, 0x8b}, Uncompressed},
		{"gzip not deflate", []byte{0x1f, 0x8b, 0x07}, Uncompressed},
		{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x04}, Zstd},
		{"zstd skippable", []byte{0x5e, 0x2a, 0x4d, 0x18, 0x00}, Zstd},
		{"not skippable", []byte{0x4e, 0x2a, 0x4d, 0x18}, Uncompressed},
	}
	for _, tt := range tests {
		if got := DetectCompression(tt.peek); got != tt.want {
			t.Errorf("%s: DetectCompression(%x) = %v, want %v", tt.name, tt.peek, got, tt.want)
		}
	}
}

func testPayload(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		if i%7 == 0 {
			b[i] = byte(r.IntN(256))
		} else {
			b[i] = "tar layer "[i%10]
		}
	}
	return b
}

func compress(t testing.TB, c Compression, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := CompressStream(&buf, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	for _, size := range []int{0, 3, 1 << 10, 3*raChunkSize + 17} {
		data := testPayload(size)
		for _, c := range []Compression{Uncompressed, Gzip, Zstd} {
			blob := compress(t, c, data)
			if size > 0 && DetectCompression(blob) != c {
				t.Errorf("size %d: compressed with %v, detected %v", size, c, DetectCompression(blob))
			}
			rc, got, err := DecompressStream(bytes.NewReader(blob))
			if err != nil {
				t.Fatalf("%v size %d: %v", c, size, err)
			}
			if size > 0 && got != c {
				t.Errorf("DecompressStream detected %v, want %v", got, c)
			}
			out, err := io.ReadAll(rc)
			if err != nil {
				t.Fatalf("%v size %d: read: %v", c, size, err)
			}
			if err := rc.Close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, data) {
				t.Errorf("%v size %d: round trip differs (%d bytes back)", c, size, len(out))
			}
		}
	}
}

func TestDecompressCorrupt(t *testing.T) {
	data := testPayload(2 * raChunkSize)
	for _, c := range []Compression{Gzip, Zstd} {
		blob := compress(t, c, data)
		truncated := blob[:len(blob)/2]
		rc, _, err := DecompressStream(bytes.NewReader(truncated))
		if err != nil {
			t.Fatalf("%v: open: %v", c, err)
		}
		if _, err := io.ReadAll(rc); err == nil {
			t.Errorf("%v: truncated stream read without error", c)
		}
		rc.Close()
	}
	_, _, err := DecompressStream(bytes.NewReader([]byte{0x1f, 0x8b, 0x08, 0xff, 0}))
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad gzip header: got %v, want invalid argument", err)
	}
}

func TestReadaheadCloseEarly(t *testing.T) {
	blob := compress(t, Gzip, testPayload(8*raChunkSize))
	rc, _, err := DecompressStream(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rc, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	rc.Close()
	if _, err := rc.Read(make([]byte, 10)); !errors.Is(err, errReadaheadClosed) {
		t.Errorf("read after close: %v", err)
	}
}

// failingReader returns its data and then a network-style error.
type failingReader struct{ r io.Reader }

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errors.New("connection reset")
	}
	return n, err
}

func TestDecompressPropagatesSourceError(t *testing.T) {
	blob := compress(t, Gzip, testPayload(raChunkSize))
	rc, _, err := DecompressStream(&failingReader{bytes.NewReader(blob[:len(blob)-10])})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Errorf("got %v, want the source's error", err)
	}
}

func TestCompressStreamUnknown(t *testing.T) {
	if _, err := CompressStream(io.Discard, Compression(9)); !errdefs.IsNotImplemented(err) {
		t.Errorf("got %v", err)
	}
}

func TestFromMediaType(t *testing.T) {
	tests := []struct {
		mt   string
		want Compression
	}{
		{"application/vnd.oci.image.layer.v1.tar", Uncompressed},
		{"application/vnd.oci.image.layer.v1.tar+gzip", Gzip},
		{"application/vnd.oci.image.layer.v1.tar+zstd", Zstd},
		{"application/vnd.oci.image.layer.nondistributable.v1.tar", Uncompressed},
		{"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", Gzip},
		{"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", Zstd},
		{"application/vnd.docker.image.rootfs.diff.tar", Uncompressed},
		{"application/vnd.docker.image.rootfs.diff.tar.gzip", Gzip},
		{"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", Gzip},
		{"application/vnd.oci.image.layer.v1.tar+gzip+encrypted", Gzip},
		{"application/vnd.oci.image.layer.v1.tar+zstd+encrypted", Zstd},
	}
	for _, tt := range tests {
		got, err := FromMediaType(tt.mt)
		if err != nil || got != tt.want {
			t.Errorf("FromMediaType(%q) = %v, %v; want %v", tt.mt, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.layer.v1.tar+bzip2"} {
		_, err := FromMediaType(bad)
		if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("FromMediaType(%q): got %v, want not-implemented error naming it", bad, err)
		}
	}
	if !IsNondistributable("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip") ||
		IsNondistributable("application/vnd.oci.image.layer.v1.tar") {
		t.Error("IsNondistributable")
	}
	for _, c := range []Compression{Uncompressed, Gzip, Zstd} {
		mt, err := MediaType(c)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := FromMediaType(mt); err != nil || back != c {
			t.Errorf("MediaType(%v) = %q does not map back: %v %v", c, mt, back, err)
		}
	}
}

func FuzzDetect(f *testing.F) {
	f.Add([]byte{0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff})
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58})
	f.Add([]byte{0x50, 0x2a, 0x4d, 0x18, 1, 0, 0, 0, 0})
	f.Add([]byte("ustar"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := DetectCompression(data)
		if c != DetectCompression(append(bytes.Clone(data), 0xaa)) && len(data) >= peekSize {
			t.Fatalf("detection depends on bytes past the magic")
		}
		rc, got, err := DecompressStream(bytes.NewReader(data))
		if got != c {
			t.Fatalf("DecompressStream says %v, DetectCompression %v", got, c)
		}
		if err != nil {
			return
		}
		defer rc.Close()
		n, _ := io.Copy(io.Discard, io.LimitReader(rc, 64<<20))
		if c == Uncompressed && n != int64(len(data)) {
			t.Fatalf("uncompressed stream lost bytes: %d of %d", n, len(data))
		}
	})
}

// BenchmarkDecompress compares inflating in the consumer's goroutine with
// the readahead used by DecompressStream, with a consumer that does a little
// work per byte, as untar does.
func BenchmarkDecompress(b *testing.B) {
	data := testPayload(64 << 20)
	blob := compress(b, Gzip, data)
	consume := func(r io.Reader) {
		buf := make([]byte, 1<<20)
		var sum byte
		for {
			n, err := r.Read(buf)
			for _, c := range buf[:n:n] {
				sum ^= c
			}
			if err != nil {
				break
			}
		}
		_ = sum
	}
	b.Run("direct", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			gz, err := gzip.NewReader(bytes.NewReader(blob))
			if err != nil {
				b.Fatal(err)
			}
			consume(gz)
		}
	})
	b.Run("readahead", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			rc, _, err := DecompressStream(bytes.NewReader(blob))
			if err != nil {
				b.Fatal(err)
			}
			consume(rc)
			rc.Close()
		}
	})
}
