// Package remotes defines how berth talks to image registries: a Resolver
// turns a reference into a descriptor, a Fetcher reads the content it
// points at, a Pusher writes content back.
//
// Lifecycle of a pull:
//
//  1. The caller resolves a reference ("docker.io/library/busybox:1.36" or
//     "host:5000/app@sha256:...") with Resolver.Resolve. The registry
//     answers with the root descriptor (an index or a manifest): its media
//     type, digest and size. Resolving a tag is a trusted operation: only
//     hosts that hold the resolve capability are asked.
//  2. The caller opens a Fetcher for the same reference and reads the root
//     and then each child (platform manifests, configs, layers) with
//     Fetcher.Fetch. The reader returns exactly desc.Size bytes or an
//     error; it does not verify the digest, the caller's content ingest
//     does. A reader may reconnect behind the caller's back (HTTP Range)
//     when a connection breaks; the caller only sees a slower read.
//  3. Layers read lazily use RangeFetcher.FetchRange instead.
//
// Lifecycle of a push: children first (layers, config, platform manifests,
// then the index), each with Pusher.Push; the root last, under the
// reference's tag. A blob the registry already holds is not sent again.
//
// The registry package implements these interfaces over the OCI
// distribution API, remotes/hosts reads which hosts serve a registry
// (containerd's certs.d/hosts.toml) and remotes/auth authenticates.
package remotes

import (
	"context"
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Resolver turns references into descriptors and opens fetchers and
// pushers for them.
type Resolver interface {
	// Resolve returns the normalized name of ref and the descriptor of
	// the content it points at. A reference with a digest resolves to
	// that digest; a tag is looked up in the registry.
	Resolve(ctx context.Context, ref string) (name string, desc ocispec.Descriptor, err error)
	// Fetcher returns a Fetcher for the repository of ref.
	Fetcher(ctx context.Context, ref string) (Fetcher, error)
	// Pusher returns a Pusher for the repository (and tag) of ref.
	Pusher(ctx context.Context, ref string) (Pusher, error)
}

// Fetcher reads content from one repository.
type Fetcher interface {
	// Fetch opens desc for reading. The reader yields exactly desc.Size
	// bytes and then io.EOF, or fails; the digest is not verified.
	Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error)
}

// RangeFetcher is implemented by fetchers that can read part of a blob,
// the fast path of lazy pulling.
type RangeFetcher interface {
	// FetchRange opens bytes [offset, offset+length) of desc. The reader
	// yields exactly length bytes or fails.
	FetchRange(ctx context.Context, desc ocispec.Descriptor, offset, length int64) (io.ReadCloser, error)
}

// Pusher writes content to one repository.
type Pusher interface {
	// Push uploads desc, reading its desc.Size bytes from ra. Manifests
	// and indexes (by media type) are stored by digest unless an option
	// asks for the reference's tag. A blob or manifest that the registry
	// already holds is not uploaded again, and Push returns nil.
	Push(ctx context.Context, desc ocispec.Descriptor, ra io.ReaderAt, opts ...PushOpt) error
}

// PushOpts are the options of one Pusher.Push.
type PushOpts struct {
	// MountFrom names repositories of the same registry that may hold
	// the blob: the pusher asks the registry to mount it from there
	// (cross-repository blob mount) instead of uploading the bytes.
	MountFrom []string
	// Tag stores a manifest under the reference's tag rather than its
	// digest; use it for the root of the image, pushed last.
	Tag bool
}

// PushOpt sets a PushOpts field.
type PushOpt func(*PushOpts)

// WithMountFrom adds repositories (paths within the same registry, such
// as "library/busybox") to mount the blob from.
func WithMountFrom(repos ...string) PushOpt {
	return func(o *PushOpts) { o.MountFrom = append(o.MountFrom, repos...) }
}

// WithTag stores the manifest under the reference's tag.
func WithTag() PushOpt {
	return func(o *PushOpts) { o.Tag = true }
}
