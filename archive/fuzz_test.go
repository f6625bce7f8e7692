package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
)

// fuzzSeeds are scripts for FuzzApplyEntries: one entry a line,
// "type|name|link|data|mode", "@S" standing for the sentinel's absolute path.
var fuzzSeeds = []string{
	"0|../etc/passwd|||644",
	"5|a/||||\n0|a/../../x|||",
	"2|evil|@S|||\n0|evil/file||pwned|",
	"2|evil|../../..|||\n0|evil/file||pwned|",
	"2|evil|../sentinel|||\n0|evil/victim||pwned|",
	"1|h|../../etc/passwd|||",
	"2|evil|@S|||\n1|h|evil/victim|||",
	"2|evil|@S/victim|||\n0|evil||pwned|",
	"2|evil|@S|||\n0|evil/.wh.victim|||\n0|evil/.wh..wh..opq|||",
	"2|a|b|||\n2|b|/|||\n0|a/etc/x||x|",
	"2|loop|loop|||\n0|loop/x|||",
	"5|d/||||\n0|d/f||1|\n0|d/.wh..wh..opq|||\n0|.wh.d|||",
	"2|evil|@S/dir|||\n5|evil/||||755\n3|evil/null|||666",
	"6|fifo|||600\n1|hl|fifo|||\n2|sl|hl|||\n0|sl|||",
}

// fuzzMaxSize keeps sparse entries claiming terabytes from stalling a run.
const fuzzMaxSize = 16 << 20

func FuzzApplyEntries(f *testing.F) {
	for i, s := range fuzzSeeds {
		f.Add(s, uint8(i))
	}
	f.Fuzz(func(t *testing.T, script string, flags uint8) {
		s := newSandbox(t)
		blob := scriptTar(strings.ReplaceAll(script, "@S", s.sentinel))
		opts := []ApplyOpt{WithConvertWhiteout(flags&1 != 0), WithRejectSymlinkEscapes(flags&2 != 0), WithMaxUnpackedSize(fuzzMaxSize)}
		if flags&4 != 0 {
			opts = append(opts, withWalkOnly())
		}
		_, _ = Apply(context.Background(), s.root, bytes.NewReader(blob), opts...)
		s.check(t)
	})
}

// scriptTar builds a tar from a fuzz script, dropping lines the tar writer
// refuses: the point is to fuzz Apply, not archive/tar.
func scriptTar(script string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i, line := range strings.Split(script, "\n") {
		if i == 64 {
			break
		}
		f := strings.SplitN(line, "|", 5)
		if len(f) < 5 || len(f[0]) != 1 {
			continue
		}
		mode, _ := strconv.ParseInt(f[4], 8, 64)
		hdr := &tar.Header{Typeflag: f[0][0], Name: f[1], Linkname: f[2], Mode: mode & 0o7777,
			Size: int64(len(f[3])), Devmajor: 1, Devminor: 3, Format: tar.FormatPAX}
		if hdr.Typeflag != tar.TypeReg {
			hdr.Size = 0
		}
		if tw.WriteHeader(hdr) != nil {
			continue
		}
		_, _ = tw.Write([]byte(f[3])[:hdr.Size])
	}
	_ = tw.Close()
	return buf.Bytes()
}

func FuzzApply(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(scriptTar(strings.ReplaceAll(s, "@S", "/tmp")))
	}
	f.Add([]byte{})
	f.Add(gnuSparseTar("sparse", 1<<20, 4096, []byte("data")))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSandbox(t)
		_, _ = Apply(context.Background(), s.root, bytes.NewReader(data), WithMaxUnpackedSize(fuzzMaxSize))
		s.check(t)
	})
}
