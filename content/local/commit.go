package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/content"
)

// Commit verifies the bytes written and moves them into blobs/. size 0
// and expected "" skip their check; opts are applied and their labels
// ignored (the metadata layer keeps labels).
//
// A failed verification (errdefs.ErrFailedPrecondition) keeps the writer
// open and the ingest intact, for Truncate, more writes or Abort. Past
// verification the writer is released whatever happens: on success, and
// when the blob exists already (errdefs.ErrAlreadyExists), the ingest is
// removed; on an I/O error before the blob is in place, it is kept for a
// resume.
func (w *writer) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.Opt) error {
	var info content.Info
	for _, o := range opts {
		if err := o(&info); err != nil {
			return err
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return w.closedError()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dgst, err := w.verify(size, expected)
	if err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("commit ingest ref %q: sync data: %w", w.ref, err)
	}
	if err := w.release(); err != nil {
		return fmt.Errorf("commit ingest ref %q: close data: %w", w.ref, err)
	}
	err = w.s.publish(filepath.Join(w.dir, fileData), dgst)
	if target, _ := w.s.BlobPath(dgst); exists(target) {
		// The blob is in place, so the ingest is of no use any more; a
		// failed removal leaves a temporary directory that NewStore
		// removes, or an ingest without data that Abort removes.
		_ = w.s.removeIngest(w.dir)
	}
	if err != nil {
		return fmt.Errorf("commit ingest ref %q: %w", w.ref, err)
	}
	return nil
}

// verify checks the bytes written against size and expected and returns
// their digest.
func (w *writer) verify(size int64, expected digest.Digest) (digest.Digest, error) {
	fi, err := w.f.Stat()
	if err != nil {
		return "", fmt.Errorf("commit ingest ref %q: %w", w.ref, err)
	}
	if fi.Size() != w.offset {
		return "", fmt.Errorf("commit ingest ref %q: data file holds %d bytes, writer wrote %d: %w",
			w.ref, fi.Size(), w.offset, errdefs.ErrFailedPrecondition)
	}
	if size > 0 && size != w.offset {
		return "", fmt.Errorf("commit ingest ref %q: unexpected commit size %d, expected %d: %w",
			w.ref, w.offset, size, errdefs.ErrFailedPrecondition)
	}
	dgst := w.digester.Digest()
	if expected == "" {
		return dgst, nil
	}
	if err := expected.Validate(); err != nil {
		return "", fmt.Errorf("commit ingest ref %q: expected digest %q: %v: %w",
			w.ref, expected, err, errdefs.ErrInvalidArgument)
	}
	if expected.Algorithm() != dgst.Algorithm() {
		if dgst, err = w.hashAs(expected.Algorithm()); err != nil {
			return "", err
		}
	}
	if dgst != expected {
		return "", fmt.Errorf("commit ingest ref %q: unexpected commit digest %s, expected %s: %w",
			w.ref, dgst, expected, errdefs.ErrFailedPrecondition)
	}
	return dgst, nil
}

// hashAs digests the data written with alg, for a commit that expects a
// digest of another algorithm than the running one.
func (w *writer) hashAs(alg digest.Algorithm) (digest.Digest, error) {
	d := alg.Digester()
	if _, err := io.Copy(d.Hash(), io.NewSectionReader(w.f, 0, w.offset)); err != nil {
		return "", fmt.Errorf("commit ingest ref %q: digest with %s: %w", w.ref, alg, err)
	}
	return d.Digest(), nil
}

// publish makes the fsynced file data the blob dgst: read-only, renamed
// into blobs/ (atomic, so the blob is never half visible), and the rename
// made durable by syncing the directory.
func (s *Store) publish(data string, dgst digest.Digest) error {
	target, err := s.BlobPath(dgst)
	if err != nil {
		return err
	}
	dir := filepath.Dir(target)
	if err := ensureDir(dir); err != nil {
		return err
	}
	if exists(target) {
		return fmt.Errorf("content %s: %w", dgst, errdefs.ErrAlreadyExists)
	}
	if err := os.Chmod(data, 0o444); err != nil {
		return err
	}
	if err := os.Rename(data, target); err != nil {
		_ = os.Chmod(data, 0o600) // keep the ingest writable for a resume
		return fmt.Errorf("content %s: %w", dgst, err)
	}
	return syncDir(dir)
}

// ensureDir creates the blob directory dir if needed, durably.
func ensureDir(dir string) error {
	if err := os.Mkdir(dir, 0o755); errors.Is(err, fs.ErrExist) {
		return nil
	} else if err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
