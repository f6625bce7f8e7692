package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/content"
)

// errCorrupt marks an ingest file that cannot be parsed.
var errCorrupt = errors.New("corrupt ingest")

// tempPrefix starts the names of ingest directories being built or
// removed; WalkIngests skips them and NewStore removes stale ones.
const tempPrefix = ".tmp-"

// Names of the files in an ingest directory.
const (
	fileRef       = "ref"
	fileData      = "data"
	fileStartedAt = "startedat"
	fileUpdatedAt = "updatedat"
	fileTotal     = "total"
	fileExpected  = "expected"
)

// ingestDir returns the directory of the ingest ref; hashing the ref makes
// any string a safe directory name.
func (s *Store) ingestDir(ref string) string {
	return filepath.Join(s.root, "ingest", digest.SHA256.FromString(ref).Encoded())
}

// tryLock takes the in-memory lock of ref, held by an open Writer or, for
// a moment, by Abort.
func (s *Store) tryLock(ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if since, ok := s.locks[ref]; ok {
		return fmt.Errorf("ref %q locked: in use since %s: %w",
			ref, since.Format(time.RFC3339), errdefs.ErrUnavailable)
	}
	s.locks[ref] = time.Now()
	return nil
}

func (s *Store) unlock(ref string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.locks, ref)
}

// Status reports the ingest ref. Offset is the size of its data file and
// UpdatedAt the later of the recorded time and the data file's mtime, so
// it is current even while a Writer is open.
func (s *Store) Status(ctx context.Context, ref string) (content.Status, error) {
	st, err := readStatus(s.ingestDir(ref))
	if err != nil {
		return content.Status{}, ingestError(ref, err)
	}
	if st.Ref != ref {
		return content.Status{}, fmt.Errorf("ingest ref %q: directory holds ref %q", ref, st.Ref)
	}
	return st, nil
}

// ListStatuses reports the ingests whose ref matches any of filters. A
// filter is "" (everything), "ref==VALUE" or "ref~=REGEXP"; VALUE and
// REGEXP may be double-quoted. Other filters fail with
// errdefs.ErrInvalidArgument: the metadata layer does the full filtering.
func (s *Store) ListStatuses(ctx context.Context, filters ...string) ([]content.Status, error) {
	match, err := parseFilters(filters)
	if err != nil {
		return nil, err
	}
	var out []content.Status
	err = s.WalkIngests(func(ref string) error {
		if !match(ref) {
			return nil
		}
		st, err := s.Status(ctx, ref)
		if errdefs.IsNotFound(err) {
			return nil // committed or aborted meanwhile
		} else if err != nil {
			return err
		}
		out = append(out, st)
		return nil
	})
	return out, err
}

// Abort removes the ingest ref. It fails with errdefs.ErrNotFound when
// there is none, and with errdefs.ErrUnavailable while a Writer holds the
// ref: its owner must Close it first, so that garbage collection never
// pulls an ingest from under an active download.
func (s *Store) Abort(ctx context.Context, ref string) error {
	if err := s.tryLock(ref); err != nil {
		return fmt.Errorf("abort: %w", err)
	}
	defer s.unlock(ref)
	if err := s.removeIngest(s.ingestDir(ref)); err != nil {
		return ingestError(ref, err)
	}
	return nil
}

// WalkIngests calls fn with the ref of every ingest, including those with
// an open Writer. The garbage collector and the metadata layer use it to
// find ingests that no namespace references.
func (s *Store) WalkIngests(fn func(ref string) error) error {
	dir := filepath.Join(s.root, "ingest")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read ingests in %s: %w", dir, err)
	}
	for _, e := range entries {
		if digest.SHA256.Validate(e.Name()) != nil {
			continue // a temporary directory, or foreign
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), fileRef))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		} else if err != nil {
			return fmt.Errorf("read ingest %s: %w", e.Name(), err)
		}
		ref := string(b)
		if digest.SHA256.FromString(ref).Encoded() != e.Name() {
			continue // garbled by a crash; the next Writer on the ref restarts it
		}
		if err := fn(ref); err != nil {
			return err
		}
	}
	return nil
}

// removeIngest renames dir to a temporary name, then removes it, so that a
// crash midway leaves nothing that looks like a live ingest.
func (s *Store) removeIngest(dir string) error {
	trash := filepath.Join(filepath.Dir(dir), tempPrefix+"rm-"+filepath.Base(dir))
	os.RemoveAll(trash) // left by a crash during an earlier removal
	if err := os.Rename(dir, trash); err != nil {
		return err
	}
	return os.RemoveAll(trash)
}

// createIngest builds a new ingest directory under a temporary name and
// renames it into place, so a crash never leaves one without its files.
func (s *Store) createIngest(dir, ref string, total int64, expected digest.Digest) error {
	tmp, err := os.MkdirTemp(filepath.Dir(dir), tempPrefix)
	if err != nil {
		return err
	}
	now := formatTime(time.Now())
	fields := [][2]string{
		{fileRef, ref}, {fileData, ""}, {fileStartedAt, now}, {fileUpdatedAt, now},
		{fileTotal, strconv.FormatInt(total, 10)}, {fileExpected, expected.String()},
	}
	for _, f := range fields {
		if err = os.WriteFile(filepath.Join(tmp, f[0]), []byte(f[1]), 0o600); err != nil {
			break
		}
	}
	if err == nil {
		err = os.Rename(tmp, dir)
	}
	if err != nil {
		os.RemoveAll(tmp)
	}
	return err
}

// writeField replaces one small file of an ingest through a rename, so a
// concurrent Status never reads it half-written.
func writeField(dir, name, value string) error {
	tmp := filepath.Join(dir, name+".tmp")
	if err := os.WriteFile(tmp, []byte(value), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

// readStatus reads the ingest in dir.
func readStatus(dir string) (content.Status, error) {
	r := fieldReader{dir: dir}
	st := content.Status{
		Ref:       r.read(fileRef),
		StartedAt: r.time(fileStartedAt),
		UpdatedAt: r.time(fileUpdatedAt),
		Total:     r.int(fileTotal),
		Expected:  r.digest(fileExpected),
	}
	if r.err != nil {
		return content.Status{}, r.err
	}
	fi, err := os.Stat(filepath.Join(dir, fileData))
	if err != nil {
		return content.Status{}, err
	}
	st.Offset = fi.Size()
	if fi.ModTime().After(st.UpdatedAt) {
		st.UpdatedAt = fi.ModTime()
	}
	return st, nil
}

// fieldReader reads the files of an ingest, keeping the first error.
type fieldReader struct {
	dir string
	err error
}

func (r *fieldReader) read(name string) string {
	if r.err != nil {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(r.dir, name))
	r.err = err
	return string(b)
}

// time parses a time field. A malformed one reads as zero rather than
// failing: times are informative, and writeField does not fsync.
func (r *fieldReader) time(name string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, strings.TrimSpace(r.read(name)))
	return t
}

func (r *fieldReader) int(name string) int64 {
	v := strings.TrimSpace(r.read(name))
	if r.err != nil || v == "" {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		r.err = fmt.Errorf("%w: field %s in %s: %v", errCorrupt, name, r.dir, err)
	}
	return n
}

func (r *fieldReader) digest(name string) digest.Digest {
	d := digest.Digest(strings.TrimSpace(r.read(name)))
	if r.err != nil || d == "" {
		return ""
	}
	if err := d.Validate(); err != nil {
		r.err = fmt.Errorf("%w: field %s in %s: %v", errCorrupt, name, r.dir, err)
	}
	return d
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// ingestError classifies an error from an ingest file operation.
func ingestError(ref string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ingest ref %q: %w", ref, errdefs.ErrNotFound)
	}
	return fmt.Errorf("ingest ref %q: %w", ref, err)
}
