package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/containerd/errdefs"
	"io"
	"os"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
)

// ingestChunk is how much input goes into one WRITE message, well under the
// gRPC message limit.
const ingestChunk = 1 << 20

type ingestResult struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

func newContentIngestCommand(a *app) *cobra.Command {
	var (
		expected  string
		size      int64
		labelArgs []string
	)
	cmd := &cobra.Command{
		Use:   "ingest REF",
		Short: "Store standard input as a blob, resuming an interrupted ingest of REF",
		Long: `Store standard input as a blob under the ingest reference REF, and print its digest.
When the daemon already holds part of REF (see "content active") and standard input
is a regular file, the ingest resumes where it stopped; otherwise it starts over.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := newIngestion(args[0], expected, size, labelArgs)
			if err != nil {
				return err
			}
			in.notes = a.stderr
			return a.run(cmd.Context(), func(ctx context.Context, c *conn) error {
				res, err := in.run(ctx, contentapi.NewContentClient(c.cc), a.stdin)
				if err != nil {
					return err
				}
				return a.out().print(res, func(w io.Writer) error {
					_, err := fmt.Fprintln(w, res.Digest)
					return err
				})
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&expected, "expected-digest", "", "digest the blob must have")
	f.Int64Var(&size, "expected-size", 0, "size in bytes the blob must have")
	f.StringArrayVar(&labelArgs, "label", nil, "label to set on the blob, as key=value (repeatable)")
	return cmd
}

// ingestion streams one blob into the content store with the Write protocol:
// STAT learns how much of ref the daemon already holds, WRITEs send the rest
// in order from that offset, and COMMIT checks size and digest and stores the
// blob. A stream that breaks off leaves the ingest active for a later resume.
type ingestion struct {
	ref      string
	expected digest.Digest
	total    int64 // expected size, 0 when unknown
	labels   map[string]string
	notes    io.Writer // where to say that an ingest resumes or restarts
}

func newIngestion(ref, expected string, size int64, labelArgs []string) (*ingestion, error) {
	if ref == "" {
		return nil, errors.New("empty ingest reference")
	}
	if size < 0 {
		return nil, fmt.Errorf("negative --expected-size %d", size)
	}
	labels, err := parseLabels(labelArgs)
	if err != nil {
		return nil, err
	}
	in := &ingestion{ref: ref, total: size, labels: labels, notes: io.Discard}
	if expected != "" {
		if in.expected, err = parseDigest(expected); err != nil {
			return nil, err
		}
	}
	return in, nil
}

func (in *ingestion) run(ctx context.Context, client contentapi.ContentClient, src io.Reader) (ingestResult, error) {
	seeker, size, seekable := seekableInput(src)
	if seekable && in.total == 0 {
		in.total = size
	}
	stream, err := client.Write(ctx)
	if err != nil {
		return ingestResult{}, err
	}
	st, err := in.exchange(stream, &contentapi.WriteContentRequest{
		Action: contentapi.WriteAction_STAT, Ref: in.ref, Total: in.total, Expected: in.expected.String(),
	})
	if errdefs.IsAlreadyExists(err) && in.expected != "" {
		// As with ctr: the blob is there already, which is what was asked.
		fmt.Fprintf(in.notes, "berth: %s already stored\n", in.expected)
		return ingestResult{Ref: in.ref, Digest: in.expected.String(), Size: in.total}, nil
	}
	if err != nil {
		return ingestResult{}, fmt.Errorf("ingest %q: %w", in.ref, err)
	}
	offset := in.resumeAt(st.GetOffset(), seeker, size, seekable)
	offset, err = in.copy(ctx, stream, src, offset)
	if err != nil {
		if ctx.Err() != nil {
			return ingestResult{}, fmt.Errorf("ingest %q interrupted at offset %d (rerun it with the input in a file to resume): %w",
				in.ref, offset, err)
		}
		return ingestResult{}, fmt.Errorf("ingest %q at offset %d: %w", in.ref, offset, err)
	}
	dgst, err := in.commit(stream, offset)
	if err != nil {
		return ingestResult{}, fmt.Errorf("commit %q: %w", in.ref, err)
	}
	return ingestResult{Ref: in.ref, Digest: dgst, Size: offset}, nil
}

// resumeAt picks the offset to write from. The daemon keeps what it has when
// the first write continues at its offset and discards it when the first
// write is at 0, so only seekable input can resume.
func (in *ingestion) resumeAt(held int64, seeker io.Seeker, size int64, seekable bool) int64 {
	if held == 0 {
		return 0
	}
	if seekable && held <= size {
		if _, err := seeker.Seek(held, io.SeekCurrent); err == nil {
			fmt.Fprintf(in.notes, "berth: resuming ingest %q at offset %d\n", in.ref, held)
			return held
		}
	}
	fmt.Fprintf(in.notes, "berth: restarting ingest %q: input cannot be resumed at offset %d\n", in.ref, held)
	return 0
}

// copy sends src from offset in WRITE messages and returns the new offset.
// It stops when ctx is done, so that input cut short by an interrupt is
// never committed.
func (in *ingestion) copy(ctx context.Context, stream contentapi.Content_WriteClient, src io.Reader,
	offset int64) (int64, error) {
	buf := make([]byte, ingestChunk)
	for {
		n, rerr := src.Read(buf)
		if err := ctx.Err(); err != nil {
			return offset, err
		}
		if n > 0 {
			if _, err := in.exchange(stream, &contentapi.WriteContentRequest{
				Action: contentapi.WriteAction_WRITE, Offset: offset, Data: buf[:n],
			}); err != nil {
				return offset, err
			}
			offset += int64(n)
		}
		if errors.Is(rerr, io.EOF) {
			return offset, nil
		}
		if rerr != nil {
			return offset, fmt.Errorf("reading input: %w", rerr)
		}
	}
}

// commit ends the stream by storing the blob, returning its digest.
func (in *ingestion) commit(stream contentapi.Content_WriteClient, offset int64) (string, error) {
	total := in.total
	if total == 0 {
		total = offset
	}
	resp, err := in.exchange(stream, &contentapi.WriteContentRequest{
		Action: contentapi.WriteAction_COMMIT, Offset: offset, Total: total,
		Expected: in.expected.String(), Labels: in.labels,
	})
	if err != nil {
		return "", err
	}
	if err := stream.CloseSend(); err != nil {
		return "", err
	}
	// containerd repeats its last answer when the client closes; drain it.
	for {
		if _, err := stream.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", err
		}
	}
	return resp.GetDigest(), nil
}

// exchange sends one request and reads its answer: the daemon answers every
// message, and its offset must account for exactly the data sent.
func (in *ingestion) exchange(stream contentapi.Content_WriteClient,
	req *contentapi.WriteContentRequest) (*contentapi.WriteContentResponse, error) {
	if err := stream.Send(req); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	// On io.EOF from Send the daemon ended the stream; Recv returns why.
	resp, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("daemon ended the write stream early")
	}
	if err != nil {
		return nil, err
	}
	if req.Action != contentapi.WriteAction_STAT {
		if want := req.Offset + int64(len(req.Data)); resp.GetOffset() != want {
			return nil, fmt.Errorf("daemon is at offset %d, want %d", resp.GetOffset(), want)
		}
	}
	return resp, nil
}

// seekableInput reports whether src can be repositioned, and how many bytes
// it holds from its current position; only regular files qualify among
// *os.File, since pipes and terminals cannot seek back.
func seekableInput(src io.Reader) (io.Seeker, int64, bool) {
	if f, ok := src.(*os.File); ok {
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return nil, 0, false
		}
	}
	s, ok := src.(io.Seeker)
	if !ok {
		return nil, 0, false
	}
	cur, err := s.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, 0, false
	}
	end, err := s.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, 0, false
	}
	if _, err := s.Seek(cur, io.SeekStart); err != nil {
		return nil, 0, false
	}
	return s, end - cur, true
}
