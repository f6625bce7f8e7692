// Package local is berth's filesystem content store: the shared byte store
// under the metadata layer, which adds namespaces and labels on top.
//
// Layout under the root directory:
//
//	blobs/<alg>/<hex>        committed blobs, mode 0444
//	ingest/<sha256(ref)>/    one directory per ingest in progress, holding
//	    ref                  the ingest's ref
//	    data                 the bytes written so far
//	    startedat, updatedat RFC 3339 times
//	    total, expected      the descriptor's size and digest (may be empty)
//
// A blob appears under blobs/ only by the rename of a verified, fsynced data
// file, so a reader never sees half a blob. An ingest directory is built
// under a temporary name and renamed into place, so every ingest/<hex>
// directory has its files. They are not fsynced (only committed data is):
// an ingest whose ref file a crash left empty is restarted by the next
// Writer on its ref, and skipped by WalkIngests.
//
// The store keeps no labels: Info reports the size and the file times
// (mtime as CreatedAt, ctime as UpdatedAt), and Update fails with
// errdefs.ErrNotImplemented. Ref locks live in memory, per Store: a process
// that dies leaves no stale lock behind, and its ingests are resumed by the
// next Writer on the same ref.
package local

import (
	"context"
	_ "crypto/sha256" // registers digest.SHA256
	_ "crypto/sha512" // registers digest.SHA384 and digest.SHA512
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/content"
)

var _ content.Store = (*Store)(nil)

// Store is a content.Store on a local filesystem. It is safe for
// concurrent use.
type Store struct {
	root string

	mu    sync.Mutex
	locks map[string]time.Time // ref -> time its Writer was opened
}

// NewStore opens the store at root, creating its directories when missing.
// It removes ingest directories left half-built by a crash.
func NewStore(root string) (*Store, error) {
	dirs := []struct {
		path string
		mode os.FileMode
	}{
		{root, 0o711},
		{filepath.Join(root, "blobs"), 0o755},
		{filepath.Join(root, "ingest"), 0o700},
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return nil, fmt.Errorf("create content store directory %s: %w", d.path, err)
		}
	}
	s := &Store{root: root, locks: make(map[string]time.Time)}
	if err := s.removeStaleTemps(); err != nil {
		return nil, err
	}
	return s, nil
}

// BlobPath returns where the blob dgst is, or would be, stored. It does not
// check that the blob exists.
func (s *Store) BlobPath(dgst digest.Digest) (string, error) {
	if err := dgst.Validate(); err != nil {
		return "", fmt.Errorf("content %q: %v: %w", dgst, err, errdefs.ErrInvalidArgument)
	}
	return filepath.Join(s.root, "blobs", dgst.Algorithm().String(), dgst.Encoded()), nil
}

// Info describes the blob dgst. Labels are always empty.
func (s *Store) Info(ctx context.Context, dgst digest.Digest) (content.Info, error) {
	p, err := s.BlobPath(dgst)
	if err != nil {
		return content.Info{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return content.Info{}, blobError(dgst, err)
	}
	return blobInfo(dgst, fi), nil
}

// Update is not supported: the local store keeps no labels, the metadata
// layer does. It fails with errdefs.ErrNotFound when the blob is missing
// and errdefs.ErrNotImplemented otherwise.
func (s *Store) Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error) {
	if _, err := s.Info(ctx, info.Digest); err != nil {
		return content.Info{}, err
	}
	return content.Info{}, fmt.Errorf("update content %s: local store keeps no labels: %w",
		info.Digest, errdefs.ErrNotImplemented)
}

// Walk calls fn for every blob, in lexical order of algorithm and hex.
// Filtering is left to the metadata layer: any non-empty filter fails with
// errdefs.ErrInvalidArgument.
func (s *Store) Walk(ctx context.Context, fn content.WalkFunc, filters ...string) error {
	for _, f := range filters {
		if f != "" {
			return fmt.Errorf("walk content: filter %q: local store does not filter: %w",
				f, errdefs.ErrInvalidArgument)
		}
	}
	blobs := filepath.Join(s.root, "blobs")
	algs, err := os.ReadDir(blobs)
	if err != nil {
		return fmt.Errorf("walk content in %s: %w", blobs, err)
	}
	for _, alg := range algs {
		if !alg.IsDir() || !digest.Algorithm(alg.Name()).Available() {
			continue
		}
		if err := s.walkAlgorithm(ctx, digest.Algorithm(alg.Name()), fn); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) walkAlgorithm(ctx context.Context, alg digest.Algorithm, fn content.WalkFunc) error {
	dir := filepath.Join(s.root, "blobs", alg.String())
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("walk content in %s: %w", dir, err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		dgst := digest.NewDigestFromEncoded(alg, e.Name())
		if dgst.Validate() != nil || !e.Type().IsRegular() {
			continue // not a blob
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted while walking
		} else if err != nil {
			return fmt.Errorf("walk content %s: %w", dgst, err)
		}
		if err := fn(blobInfo(dgst, fi)); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the blob dgst.
func (s *Store) Delete(ctx context.Context, dgst digest.Digest) error {
	p, err := s.BlobPath(dgst)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return blobError(dgst, err)
	}
	return nil
}

// ReaderAt opens the blob desc.Digest. The result reads the file directly
// with pread: nothing is buffered, so large blobs stream in constant memory.
func (s *Store) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	p, err := s.BlobPath(desc.Digest)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, blobError(desc.Digest, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("content %s: %w", desc.Digest, err)
	}
	return &readerAt{f: f, size: fi.Size()}, nil
}

// readerAt is a content.ReaderAt over an open blob file: ReadAt is a pread
// on the file, safe for concurrent use and free of buffering.
type readerAt struct {
	f    *os.File
	size int64
}

// ReadAt reads len(p) bytes of the blob at off.
func (r *readerAt) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }

// Size returns the blob's size when it was opened.
func (r *readerAt) Size() int64 { return r.size }

// Close closes the blob file.
func (r *readerAt) Close() error { return r.f.Close() }

// blobError classifies an error from a blob file operation.
func blobError(dgst digest.Digest, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("content %s: %w", dgst, errdefs.ErrNotFound)
	}
	return fmt.Errorf("content %s: %w", dgst, err)
}

func blobInfo(dgst digest.Digest, fi fs.FileInfo) content.Info {
	return content.Info{
		Digest:    dgst,
		Size:      fi.Size(),
		CreatedAt: fi.ModTime(),
		UpdatedAt: changeTime(fi),
	}
}

// staleTempAge is how old a half-built ingest directory must be before
// NewStore removes it; building one takes milliseconds.
const staleTempAge = 10 * time.Minute

// removeStaleTemps removes ingest directories that a crash left unfinished.
func (s *Store) removeStaleTemps() error {
	dir := filepath.Join(s.root, "ingest")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read ingests in %s: %w", dir, err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		fi, err := e.Info()
		if err != nil || time.Since(fi.ModTime()) < staleTempAge {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("remove unfinished ingest %s: %w", p, err)
		}
	}
	return nil
}
