// Package compression detects, decompresses and compresses the streams that
// carry OCI image layers: plain tar, gzip and zstd. Detection is by magic
// number, never by trusting a media type, because registries serve layers
// whose media type and bytes disagree; the media type helpers exist for
// callers that must name a compression before any byte has arrived (pushing,
// choosing an unpacker).
package compression

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compression is the compression of a layer stream.
type Compression int

const (
	// Uncompressed is a plain tar stream, and the answer for any stream
	// whose first bytes match no known magic.
	Uncompressed Compression = iota
	// Gzip is RFC 1952 gzip (deflate).
	Gzip
	// Zstd is RFC 8878 Zstandard, including streams that open with a
	// skippable frame (zstd:chunked, eStargz-zstd).
	Zstd
)

// String returns the name used in media types and logs.
func (c Compression) String() string {
	switch c {
	case Uncompressed:
		return "uncompressed"
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	}
	return fmt.Sprintf("compression(%d)", int(c))
}

// peekSize is how many bytes detection needs: the longest magic below.
const peekSize = 4

var (
	gzipMagic = []byte{0x1f, 0x8b, 0x08}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// DetectCompression reports the compression of a stream that starts with
// peek. Fewer than four bytes are fine: they simply match less.
func DetectCompression(peek []byte) Compression {
	switch {
	case bytes.HasPrefix(peek, gzipMagic):
		return Gzip
	case bytes.HasPrefix(peek, zstdMagic):
		return Zstd
	case isZstdSkippable(peek):
		return Zstd
	}
	return Uncompressed
}

// isZstdSkippable matches the little-endian magics 0x184D2A50..0x184D2A5F
// of zstd skippable frames.
func isZstdSkippable(peek []byte) bool {
	return len(peek) >= 4 && peek[0]&0xf0 == 0x50 && peek[1] == 0x2a &&
		peek[2] == 0x4d && peek[3] == 0x18
}

// zstdMaxWindow bounds the memory a hostile zstd frame can make the decoder
// allocate. 128 MiB admits everything `zstd --long` writes by default
// (window log 27) while keeping a pull of many parallel layers in bounds;
// the library default is 512 MiB.
const zstdMaxWindow = 128 << 20

// DecompressStream sniffs the compression of r and returns a reader of the
// decompressed bytes. Close must be called: it stops background
// decompression and releases decoder memory. It never closes r.
//
// Gzip is inflated a few chunks ahead in a goroutine of its own, so that
// inflating and unpacking overlap (BenchmarkApply in package archive shows
// the gain); zstd gets the same overlap from the decoder's own concurrency.
// Either way r is read in the background: to consume the rest of r (say, to
// finish a digest), read the returned reader to EOF rather than r itself,
// and after Close treat r as still in use until it is closed or at EOF.
func DecompressStream(r io.Reader) (io.ReadCloser, Compression, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	peek, err := br.Peek(peekSize)
	if err != nil && err != io.EOF {
		return nil, Uncompressed, fmt.Errorf("detect compression: %w", err)
	}
	c := DetectCompression(peek)
	switch c {
	case Gzip:
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, c, fmt.Errorf("open gzip stream: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		return newReadahead(gz), c, nil
	case Zstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err != nil {
			return nil, c, fmt.Errorf("open zstd stream: %w", err)
		}
		return zstdCloser{zr}, c, nil
	}
	return io.NopCloser(br), c, nil
}

// zstdCloser adapts Decoder.Close, which returns nothing.
type zstdCloser struct{ *zstd.Decoder }

func (z zstdCloser) Close() error {
	z.Decoder.Close()
	return nil
}

// CompressStream returns a writer that compresses into w with c at the
// library's default level. Close flushes the trailer; it does not close w.
func CompressStream(w io.Writer, c Compression) (io.WriteCloser, error) {
	switch c {
	case Uncompressed:
		return nopWriteCloser{w}, nil
	case Gzip:
		return gzip.NewWriter(w), nil
	case Zstd:
		zw, err := zstd.NewWriter(w)
		if err != nil {
			return nil, fmt.Errorf("open zstd writer: %w", err)
		}
		return zw, nil
	}
	return nil, fmt.Errorf("compress stream: %v: %w", c, errdefs.ErrNotImplemented)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
