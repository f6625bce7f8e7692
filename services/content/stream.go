package content

import (
	"errors"
	"fmt"
	"io"

	"github.com/berth-dev/berth/content"
	api "github.com/containerd/containerd/api/services/content/v1"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Read streams a blob from req.Offset, req.Size bytes (0: to the end).
func (s *Service) Read(req *api.ReadContentRequest, stream api.Content_ReadServer) error {
	dgst, err := parseDigest(req.Digest)
	if err != nil {
		return err
	}
	ra, err := s.store.ReaderAt(stream.Context(), ocispec.Descriptor{Digest: dgst})
	if err != nil {
		return err
	}
	defer ra.Close()
	end := ra.Size()
	if req.Offset < 0 || req.Offset > end {
		return fmt.Errorf("read %s: offset %d outside the blob's %d bytes: %w", dgst, req.Offset, end, errdefs.ErrInvalidArgument)
	}
	if req.Size > 0 && req.Offset+req.Size < end {
		end = req.Offset + req.Size
	}
	buf := make([]byte, min(readChunk, end-req.Offset))
	for off := req.Offset; off < end; {
		n, err := ra.ReadAt(buf[:min(int64(len(buf)), end-off)], off)
		if n > 0 {
			if serr := stream.Send(&api.ReadContentResponse{Offset: off, Data: buf[:n]}); serr != nil {
				return serr
			}
			off += int64(n)
		}
		if err != nil && !(errors.Is(err, io.EOF) && off >= end) {
			return fmt.Errorf("read %s at %d: %w", dgst, off, err)
		}
	}
	return nil
}

// Write serves one ingest session: the first message names the ref, then
// each message stats, writes at the current offset, or commits.
func (s *Service) Write(session api.Content_WriteServer) error {
	ctx := session.Context()
	req, err := session.Recv()
	if err != nil {
		return err
	}
	if req.Ref == "" {
		return fmt.Errorf("content write: the first message must carry a ref: %w", errdefs.ErrInvalidArgument)
	}
	expected := digest.Digest(req.Expected)
	total := req.Total
	w, err := s.store.Writer(ctx, content.WithRef(req.Ref), content.WithDescriptor(ocispec.Descriptor{Digest: expected, Size: total}))
	if err != nil {
		return err
	}
	defer w.Close()
	for {
		if req.Expected != "" {
			expected = digest.Digest(req.Expected)
		}
		if req.Total > 0 {
			total = req.Total
		}
		resp, err := s.writeStep(session, w, req, total, expected)
		if err != nil {
			return err
		}
		if err := session.Send(resp); err != nil {
			return err
		}
		if req, err = session.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func (s *Service) writeStep(session api.Content_WriteServer, w content.Writer, req *api.WriteContentRequest, total int64, expected digest.Digest) (*api.WriteContentResponse, error) {
	st, err := w.Status()
	if err != nil {
		return nil, err
	}
	resp := &api.WriteContentResponse{Action: req.Action, Offset: st.Offset, Total: total,
		StartedAt: timestamppb.New(st.StartedAt), UpdatedAt: timestamppb.New(st.UpdatedAt)}
	switch req.Action {
	case api.WriteAction_STAT:
		resp.Digest = w.Digest().String()
		return resp, nil
	case api.WriteAction_WRITE, api.WriteAction_COMMIT:
	default:
		return nil, fmt.Errorf("content write %q: unknown action %v: %w", req.Ref, req.Action, errdefs.ErrInvalidArgument)
	}
	if req.Offset > 0 && req.Offset != st.Offset {
		return nil, fmt.Errorf("content write %q: write at offset %d must happen at the current offset %d: %w", st.Ref, req.Offset, st.Offset, errdefs.ErrOutOfRange)
	}
	if req.Offset == 0 && st.Offset > 0 && len(req.Data) > 0 {
		if err := w.Truncate(0); err != nil {
			return nil, err
		}
		resp.Offset = 0
	}
	if len(req.Data) > 0 {
		n, err := w.Write(req.Data)
		resp.Offset += int64(n)
		if err != nil {
			return nil, err
		}
	}
	if req.Action == api.WriteAction_COMMIT {
		if err := w.Commit(session.Context(), total, expected, content.WithLabels(req.Labels)); err != nil {
			return nil, err
		}
	}
	resp.Digest = w.Digest().String()
	return resp, nil
}
