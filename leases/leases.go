// Package leases defines leases: named, optionally expiring holds on
// resources (blobs, ingests, snapshots) that keep them from garbage
// collection while a client works, e.g. between fetching a layer and
// recording the image that references it.
//
// A lease is created, resources are added to it explicitly (AddResource) or
// implicitly by any object created with the lease in the request context
// (the "containerd-lease" header), and deleting the lease releases them all.
// A lease with the containerd.io/gc.expire label is removed by the garbage
// collector once that time has passed.
package leases

import (
	"context"
	"time"
)

// GRPCHeader is the gRPC metadata key naming the lease of a request.
const GRPCHeader = "containerd-lease"

// Lease is one lease.
type Lease struct {
	ID        string
	CreatedAt time.Time
	Labels    map[string]string
}

// Resource is something a lease holds: Type is "content", "ingests" or
// "snapshots/<snapshotter>", ID the digest, ref or key.
type Resource struct {
	ID   string
	Type string
}

// Manager keeps the leases of every namespace; the namespace of each call
// comes from ctx.
type Manager interface {
	Create(ctx context.Context, lease Lease) (Lease, error)
	// Delete removes the lease; with sync, garbage collection has run
	// before Delete returns.
	Delete(ctx context.Context, id string, sync bool) error
	List(ctx context.Context, filters ...string) ([]Lease, error)
	AddResource(ctx context.Context, id string, r Resource) error
	DeleteResource(ctx context.Context, id string, r Resource) error
	ListResources(ctx context.Context, id string) ([]Resource, error)
}

type leaseKey struct{}

// WithLease returns a context whose new objects are held by lease id.
func WithLease(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, leaseKey{}, id)
}

// FromContext returns the lease of ctx, if any.
func FromContext(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(leaseKey{}).(string)
	return id, ok && id != ""
}
