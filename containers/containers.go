// Package containers defines berth's container records: the metadata from
// which a task (the running process) is later made — which runtime runs it,
// its OCI runtime spec, and the snapshot that is its root filesystem.
//
// A container record is only bookkeeping: creating one starts nothing and
// deleting one stops nothing.
//
// # Lifecycle
//
// A client (ctr, the CRI, berth run) makes a container in three steps:
//
//  1. Snapshots.Prepare(key, parent=image's top chain ID) in Snapshotter:
//     the writable root filesystem. Clients do this under a short lease so
//     that a crash between steps leaves nothing behind.
//  2. Store.Create with SnapshotKey=key, Snapshotter, Image, Runtime and
//     Spec. From now on the container keeps its snapshot alive: garbage
//     collection treats every container as a root that references
//     "<Snapshotter>/<SnapshotKey>" and whatever its
//     containerd.io/gc.ref.* labels name. The client's lease can end.
//  3. Tasks.Create (later) reads the record to start the process.
//
// Store.Update changes the mutable fields (labels, spec, extensions, image,
// snapshot key); the runtime name, snapshotter and sandbox are fixed at
// creation. Store.Delete removes the record (after the task is gone); the
// snapshot then goes at the next collection unless something else refers
// to it. Containers are never leased.
package containers

import (
	"context"
	"time"

	"github.com/containerd/typeurl/v2"
)

// SpecTypeURL is the type URL of an OCI runtime spec in Container.Spec.
const SpecTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"

// Container is one container record in a namespace.
type Container struct {
	// ID is unique in the namespace and follows identifiers.Validate.
	ID string
	// Labels are the user's; containerd.io/gc.ref.* labels keep content and
	// snapshots alive.
	Labels map[string]string
	// Image is the name of the image the container was made from, for
	// information only: it does not keep the image alive.
	Image string
	// Runtime says how tasks of the container run; immutable.
	Runtime RuntimeInfo
	// Spec is the OCI runtime spec (usually of type SpecTypeURL), stored
	// and returned as the client sent it. Required.
	Spec typeurl.Any
	// SnapshotKey names the root filesystem's snapshot in Snapshotter.
	SnapshotKey string
	// Snapshotter is the snapshotter of SnapshotKey; immutable, and
	// required when SnapshotKey is set.
	Snapshotter string
	// Extensions are opaque client data by name.
	Extensions map[string]typeurl.Any
	// SandboxID is the sandbox the container belongs to, if any; immutable.
	SandboxID string

	CreatedAt time.Time
	UpdatedAt time.Time
}

// RuntimeInfo names the runtime (a shim, e.g. io.containerd.runc.v2) and
// its options.
type RuntimeInfo struct {
	Name    string
	Options typeurl.Any
}

// Store keeps the container records of every namespace; the namespace of
// each call comes from ctx. Errors are errdefs classes: InvalidArgument for
// a bad record or field mask, NotFound, AlreadyExists.
type Store interface {
	Get(ctx context.Context, id string) (Container, error)
	// List returns the containers matching any of filters (containerd
	// filter syntax over id, image, runtime.name, labels.KEY, and berth's
	// snapshotter, snapshotkey and sandbox).
	List(ctx context.Context, filters ...string) ([]Container, error)
	// Create records container; it fails with AlreadyExists when the ID is
	// taken, InvalidArgument when the ID, labels, runtime name or spec are
	// missing or invalid.
	Create(ctx context.Context, container Container) (Container, error)
	// Update changes the fields of container.ID named by fieldpaths:
	// "labels", "labels.KEY", "spec", "extensions", "extensions.KEY",
	// "image", "snapshotkey"; any other path is InvalidArgument. With no
	// fieldpaths, those five fields are replaced, and container's
	// Snapshotter and Runtime.Name must equal the stored ones.
	Update(ctx context.Context, container Container, fieldpaths ...string) (Container, error)
	// Delete removes the record; its snapshot is collected later unless
	// something else refers to it.
	Delete(ctx context.Context, id string) error
}
