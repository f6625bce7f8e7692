// Package content defines berth's content store: immutable blobs addressed by
// digest, written through resumable ingests.
//
// Lifecycle of a blob:
//
//  1. A client opens a Writer for a ref (Ingester.Writer). The ref names the
//     ingest; a second Writer on the same ref while the first is open fails
//     with errdefs.ErrUnavailable. An ingest survives a crash or a closed
//     Writer: opening the ref again resumes at the bytes already written
//     (Status reports the offset).
//  2. The client writes bytes, then calls Commit with the expected size and
//     digest. Commit verifies both, fsyncs, and atomically renames the data
//     into the blob store. If the blob already exists Commit fails with
//     errdefs.ErrAlreadyExists and the ingest is removed all the same.
//  3. The blob is readable through Provider.ReaderAt and described by
//     Manager.Info until Manager.Delete removes it. Abort removes an ingest.
//
// The local implementation (content/local) holds the bytes; the metadata
// package wraps it so that blobs and ingests are visible per namespace and
// carry labels.
package content

import (
	"context"
	"io"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Info describes a committed blob.
type Info struct {
	Digest    digest.Digest
	Size      int64
	CreatedAt time.Time
	UpdatedAt time.Time
	Labels    map[string]string
}

// Status describes an ingest in progress.
type Status struct {
	Ref       string
	Offset    int64
	Total     int64
	Expected  digest.Digest
	StartedAt time.Time
	UpdatedAt time.Time
}

// ReaderAt reads a committed blob.
type ReaderAt interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// Provider opens committed blobs for reading.
type Provider interface {
	// ReaderAt opens the blob desc.Digest; desc.Size may be 0 (unknown).
	ReaderAt(ctx context.Context, desc ocispec.Descriptor) (ReaderAt, error)
}

// Writer writes one ingest. Close releases the ref's lock and keeps the
// bytes written so far for a later resume.
type Writer interface {
	io.WriteCloser
	// Digest is the digest of the bytes written so far.
	Digest() digest.Digest
	// Commit verifies size and expected (when non-zero) against the bytes
	// written and makes the blob visible. opts may set labels.
	Commit(ctx context.Context, size int64, expected digest.Digest, opts ...Opt) error
	// Status reports the ingest's progress.
	Status() (Status, error)
	// Truncate discards the bytes after size; the digest is recomputed.
	Truncate(size int64) error
}

// Ingester opens writers.
type Ingester interface {
	// Writer opens or resumes the ingest named by WithRef. WithDescriptor
	// gives the expected digest and size: when that blob already exists,
	// Writer fails with errdefs.ErrAlreadyExists before any byte is sent.
	Writer(ctx context.Context, opts ...WriterOpt) (Writer, error)
}

// WalkFunc is called once per blob by Manager.Walk.
type WalkFunc func(Info) error

// Manager reads and changes what is known about committed blobs.
type Manager interface {
	Info(ctx context.Context, dgst digest.Digest) (Info, error)
	// Update changes the fields named by fieldpaths ("labels",
	// "labels.KEY"); with none, every mutable field is replaced.
	Update(ctx context.Context, info Info, fieldpaths ...string) (Info, error)
	// Walk calls fn for each blob matching any of filters (containerd
	// filter syntax over digest, size and labels).
	Walk(ctx context.Context, fn WalkFunc, filters ...string) error
	Delete(ctx context.Context, dgst digest.Digest) error
}

// IngestManager lists and cancels ingests in progress.
type IngestManager interface {
	Status(ctx context.Context, ref string) (Status, error)
	ListStatuses(ctx context.Context, filters ...string) ([]Status, error)
	Abort(ctx context.Context, ref string) error
}

// Store is a whole content store.
type Store interface {
	Manager
	Provider
	IngestManager
	Ingester
}

// Opt changes a commit.
type Opt func(*Info) error

// WithLabels sets the labels of the committed blob.
func WithLabels(labels map[string]string) Opt {
	return func(info *Info) error {
		info.Labels = labels
		return nil
	}
}

// WriterOpts are the options of Ingester.Writer.
type WriterOpts struct {
	Ref  string
	Desc ocispec.Descriptor
}

// WriterOpt sets a WriterOpts field.
type WriterOpt func(*WriterOpts) error

// WithRef names the ingest.
func WithRef(ref string) WriterOpt {
	return func(o *WriterOpts) error {
		o.Ref = ref
		return nil
	}
}

// WithDescriptor gives the expected digest and total size of the blob.
func WithDescriptor(desc ocispec.Descriptor) WriterOpt {
	return func(o *WriterOpts) error {
		o.Desc = desc
		return nil
	}
}

// DataOpener is implemented by writers whose bytes can be read while they
// are still being written, as the pull pipeline does to unpack a layer as
// it downloads. OpenData opens the ingest's data from its first byte; the
// reader stays valid after Commit (it then reads the committed blob) and
// must be closed by the caller. It sees only bytes already written.
type DataOpener interface {
	OpenData() (ReadAtCloser, error)
}

// ReadAtCloser reads at offsets and is closed after use.
type ReadAtCloser interface {
	io.ReaderAt
	io.Closer
}

// WriteBlob writes r as blob desc under ingest ref, verifying size and
// digest at commit. A blob that is already stored is not an error.
func WriteBlob(ctx context.Context, ing Ingester, ref string, r io.Reader, desc ocispec.Descriptor) error {
	w, err := ing.Writer(ctx, WithRef(ref), WithDescriptor(desc))
	if err != nil {
		if errdefs.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	defer w.Close()
	if st, err := w.Status(); err == nil && st.Offset > 0 {
		if err := w.Truncate(0); err != nil {
			return err
		}
	}
	if _, err := io.Copy(w, r); err != nil {
		return err
	}
	if err := w.Commit(ctx, desc.Size, desc.Digest); err != nil && !errdefs.IsAlreadyExists(err) {
		return err
	}
	return nil
}
