package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
)

// fakeIngest plays the daemon's side of one Write stream the way containerd
// does: it answers every message, truncates on a write at offset 0, rejects
// writes elsewhere than its offset, and repeats its last answer on close.
type fakeIngest struct {
	contentapi.ContentClient // only Write is used
	grpc.ClientStream        // only CloseSend is used

	held      []byte // what the daemon holds for the ref
	answers   []*contentapi.WriteContentResponse
	err       error // returned by the next Recv, ending the stream
	closed    bool
	committed []byte
	writes    []int64 // offsets of WRITE messages
}

func (f *fakeIngest) Write(context.Context, ...grpc.CallOption) (contentapi.Content_WriteClient, error) {
	return f, nil
}

func (f *fakeIngest) Send(req *contentapi.WriteContentRequest) error {
	resp := &contentapi.WriteContentResponse{Action: req.Action, Offset: int64(len(f.held))}
	if req.Action != contentapi.WriteAction_STAT {
		if req.Action == contentapi.WriteAction_WRITE {
			f.writes = append(f.writes, req.Offset)
		}
		if req.Offset > 0 && req.Offset != int64(len(f.held)) {
			f.err = errdefs.ErrOutOfRange
			return nil
		}
		if req.Offset == 0 {
			f.held = f.held[:0]
		}
		f.held = append(f.held, req.Data...)
		resp.Offset = int64(len(f.held))
	}
	if req.Action == contentapi.WriteAction_COMMIT {
		if req.Total != int64(len(f.held)) {
			f.err = errdefs.ErrFailedPrecondition
			return nil
		}
		f.committed = bytes.Clone(f.held)
		resp.Digest = digest.FromBytes(f.held).String()
	}
	f.answers = append(f.answers, resp)
	return nil
}

func (f *fakeIngest) Recv() (*contentapi.WriteContentResponse, error) {
	if f.err != nil {
		return nil, f.err
	}
	if len(f.answers) == 0 {
		if f.closed {
			return nil, io.EOF
		}
		return nil, errors.New("fake: Recv without a request")
	}
	resp := f.answers[0]
	f.answers = f.answers[1:]
	return resp, nil
}

func (f *fakeIngest) CloseSend() error {
	f.closed = true
	f.answers = append(f.answers, &contentapi.WriteContentResponse{}) // containerd's echo
	return nil
}

// pipeLike hides a reader's Seek method, as a pipe on stdin would.
type pipeLike struct{ io.Reader }

func TestIngest(t *testing.T) {
	blob := strings.Repeat("0123456789", ingestChunk/10+100) // over a chunk, even from offset 100
	for _, tc := range []struct {
		name       string
		held       string
		src        io.Reader
		wantWrites []int64
		wantNote   string
	}{
		{"new from file", "", strings.NewReader(blob), []int64{0, ingestChunk}, ""},
		{"new from pipe", "", pipeLike{strings.NewReader(blob)}, []int64{0, ingestChunk}, ""},
		{"resume from file", blob[:100], strings.NewReader(blob), []int64{100, 100 + ingestChunk},
			`berth: resuming ingest "r" at offset 100` + "\n"},
		{"restart from pipe", "garbage", pipeLike{strings.NewReader(blob)}, []int64{0, ingestChunk},
			`berth: restarting ingest "r": input cannot be resumed at offset 7` + "\n"},
		{"restart when file is shorter", blob + "x", strings.NewReader(blob), []int64{0, ingestChunk},
			fmt.Sprintf("berth: restarting ingest \"r\": input cannot be resumed at offset %d\n", len(blob)+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeIngest{held: []byte(tc.held)}
			in, err := newIngestion("r", digest.FromString(blob).String(), 0, []string{"a=b"})
			if err != nil {
				t.Fatal(err)
			}
			var notes bytes.Buffer
			in.notes = &notes
			res, err := in.run(context.Background(), fake, tc.src)
			if err != nil {
				t.Fatal(err)
			}
			if res.Digest != digest.FromString(blob).String() || res.Size != int64(len(blob)) {
				t.Errorf("result %+v", res)
			}
			if string(fake.committed) != blob {
				t.Errorf("committed %d bytes, want the %d of the blob", len(fake.committed), len(blob))
			}
			if !slices.Equal(fake.writes, tc.wantWrites) || notes.String() != tc.wantNote {
				t.Errorf("writes at %v, notes %q; want %v, %q", fake.writes, notes.String(), tc.wantWrites, tc.wantNote)
			}
		})
	}
}

func TestIngestEmptyInputDiscardsHeldData(t *testing.T) {
	fake := &fakeIngest{held: []byte("stale")}
	in, err := newIngestion("r", "", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := in.run(context.Background(), fake, pipeLike{strings.NewReader("")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != digest.FromString("").String() || len(fake.committed) != 0 {
		t.Errorf("result %+v, committed %q", res, fake.committed)
	}
}

func TestIngestReportsDaemonErrors(t *testing.T) {
	fake := &fakeIngest{}
	in, err := newIngestion("r", "", 5, nil) // expects 5 bytes, gets 3
	if err != nil {
		t.Fatal(err)
	}
	_, err = in.run(context.Background(), fake, pipeLike{strings.NewReader("abc")})
	if !errdefs.IsFailedPrecondition(err) || !strings.HasPrefix(err.Error(), `commit "r": `) {
		t.Errorf("error %v, want a failed precondition about committing r", err)
	}
}

func TestNewIngestionRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		expected string
		size     int64
		labels   []string
	}{
		{"sha256:short", 0, nil},
		{"", -1, nil},
		{"", 0, []string{"nolabel"}},
	} {
		if _, err := newIngestion("r", tc.expected, tc.size, tc.labels); err == nil {
			t.Errorf("newIngestion(%+v) accepted", tc)
		}
	}
}

func TestInterruptedIngestIsNotCommitted(t *testing.T) {
	fake := &fakeIngest{}
	in, err := newIngestion("r", "", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // as if interrupted while stdin was read
	_, err = in.run(ctx, fake, pipeLike{strings.NewReader("cut short")})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "interrupted at offset 0") {
		t.Errorf("error %v, want an interruption", err)
	}
	if fake.committed != nil {
		t.Errorf("committed %q after an interrupt", fake.committed)
	}
}
