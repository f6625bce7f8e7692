package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"github.com/berth-dev/berth/archive/compression"
	"github.com/klauspost/compress/gzip"
)

// benchLayer is a layer of about 200 MiB of mixed files, as a plain tar and
// gzipped: a few big binaries, many middling files, a crowd of small ones,
// directories, symlinks and hardlinks; contents half text, half noise.
var benchLayer = sync.OnceValues(func() ([]byte, []byte) {
	r := rand.New(rand.NewPCG(7, 11))
	var plain bytes.Buffer
	tw := tar.NewWriter(&plain)
	add := func(hdr *tar.Header, data []byte) {
		hdr.Mode, hdr.ModTime, hdr.Size = 0o755, testTime, int64(len(data))
		if err := tw.WriteHeader(hdr); err != nil {
			panic(err)
		}
		tw.Write(data)
	}
	chunk := benchContents(r, 8<<20)
	file := func(name string, size int) {
		off := r.IntN(len(chunk) - size)
		add(&tar.Header{Typeflag: tar.TypeReg, Name: name}, chunk[off:off+size])
	}
	for d := range 400 {
		dir := fmt.Sprintf("usr/share/pkg%03d", d)
		add(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/"}, nil)
		for f := range 50 {
			file(fmt.Sprintf("%s/small%02d.txt", dir, f), 256+r.IntN(4096))
		}
		for f := range 5 {
			file(fmt.Sprintf("%s/mid%d.so", dir, f), 16<<10+r.IntN(96<<10))
		}
		add(&tar.Header{Typeflag: tar.TypeSymlink, Name: dir + "/link", Linkname: "small00.txt"}, nil)
		add(&tar.Header{Typeflag: tar.TypeLink, Name: dir + "/hard", Linkname: dir + "/small01.txt"}, nil)
	}
	for f := range 12 {
		file(fmt.Sprintf("opt/big/blob%02d", f), 6<<20)
	}
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain.Bytes())
	zw.Close()
	return plain.Bytes(), gz.Bytes()
})

// benchContents returns n bytes, alternating runs of text and noise.
func benchContents(r *rand.Rand, n int) []byte {
	words := []string{"layer ", "container ", "runtime ", "snapshot ", "overlay ", "digest ", "\n"}
	b := make([]byte, 0, n)
	for len(b) < n {
		if r.IntN(2) == 0 {
			for range 64 {
				b = append(b, words[r.IntN(len(words))]...)
			}
		} else {
			for range 256 {
				b = append(b, byte(r.Uint32()))
			}
		}
	}
	return b[:n]
}

// BenchmarkApply reports MB/s of uncompressed layer for each stage alone
// and for the pull path: gunzip (DecompressStream to io.Discard), untar
// (Apply of the plain tar), gzip+untar (DecompressStream into Apply, the
// decompressor one stage ahead) and, for comparison, gzip+untar/inline
// (klauspost gzip read by Apply directly, no readahead).
func BenchmarkApply(b *testing.B) {
	plain, gz := benchLayer()
	b.Logf("layer: %d MiB tar, %d MiB gzip", len(plain)>>20, len(gz)>>20)
	b.Run("gunzip", func(b *testing.B) {
		b.SetBytes(int64(len(plain)))
		for i := 0; i < b.N; i++ {
			rc, _, err := compression.DecompressStream(bytes.NewReader(gz))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
	})
	b.Run("untar", func(b *testing.B) {
		benchApply(b, len(plain), func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(plain)), nil
		})
	})
	b.Run("gzip+untar", func(b *testing.B) {
		benchApply(b, len(plain), func() (io.ReadCloser, error) {
			rc, _, err := compression.DecompressStream(bytes.NewReader(gz))
			return rc, err
		})
	})
	b.Run("gzip+untar/inline", func(b *testing.B) {
		benchApply(b, len(plain), func() (io.ReadCloser, error) {
			return gzip.NewReader(bytes.NewReader(gz))
		})
	})
}

func benchApply(b *testing.B, size int, open func() (io.ReadCloser, error)) {
	b.SetBytes(int64(size))
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		root, err := os.MkdirTemp(b.TempDir(), "root")
		if err != nil {
			b.Fatal(err)
		}
		rc, err := open()
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := Apply(context.Background(), root, rc); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		rc.Close()
		os.RemoveAll(root)
		b.StartTimer()
	}
}
