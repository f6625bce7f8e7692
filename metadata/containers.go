package metadata

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"time"

	"github.com/berth-dev/berth/containers"
	"github.com/berth-dev/berth/filters"
	"github.com/berth-dev/berth/gc"
	"github.com/berth-dev/berth/identifiers"
	"github.com/berth-dev/berth/labels"
	"github.com/berth-dev/berth/namespaces"
	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Container records live at
//
//	v1/<ns>/containers/<id>/  createdat, updatedat, labels/, image, spec,
//	                          snapshotter, snapshotkey, sandbox,
//	                          runtime/{name, options}, extensions/<name>
//
// spec, runtime/options and each extension are a marshalled
// google.protobuf.Any, kept exactly as the client sent it.
var (
	bucketKeyContainers          = []byte("containers")
	bucketKeyContainerRuntime    = []byte("runtime")
	bucketKeyContainerExtensions = []byte("extensions")

	keyContainerImage       = []byte("image")
	keyContainerSpec        = []byte("spec")
	keyContainerSnapshotter = []byte("snapshotter")
	keyContainerSnapshotKey = []byte("snapshotkey")
	keyContainerSandbox     = []byte("sandbox")
	keyRuntimeName          = []byte("name")
	keyRuntimeOptions       = []byte("options")
)

// replaceablePaths are the fields an Update without field paths replaces,
// as in containerd.
var replaceablePaths = []string{"labels", "spec", "extensions", "image", "snapshotkey"}

// ContainerStore is the containers.Store of the metadata database.
type ContainerStore struct{ db *DB }

var _ containers.Store = (*ContainerStore)(nil)

// Containers returns the container store.
func (db *DB) Containers() *ContainerStore { return &ContainerStore{db: db} }

// Get returns container id of the context's namespace. When it is missing
// there but exists in other namespaces, the error names them.
func (s *ContainerStore) Get(ctx context.Context, id string) (containers.Container, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return containers.Container{}, err
	}
	var c containers.Container
	err = s.db.view(func(tx *bolt.Tx) error {
		b := bucket(tx, []byte(ns), bucketKeyContainers, []byte(id))
		if b == nil {
			return s.db.notFoundElsewhere(tx, ns, "container", id, bucketKeyContainers, []byte(id))
		}
		c, err = readContainer(id, b)
		return err
	})
	return c, err
}

// List returns the containers of the namespace that match any of fs.
func (s *ContainerStore) List(ctx context.Context, fs ...string) ([]containers.Container, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	filter, err := filters.Parse(fs...)
	if err != nil {
		return nil, err
	}
	var out []containers.Container
	err = s.db.view(func(tx *bolt.Tx) error {
		b := bucket(tx, []byte(ns), bucketKeyContainers)
		if b == nil {
			return nil
		}
		return b.ForEachBucket(func(k []byte) error {
			c, err := readContainer(string(k), b.Bucket(k))
			if err != nil {
				return err
			}
			if filter.Match(containerAdaptor(c)) {
				out = append(out, c)
			}
			return nil
		})
	})
	return out, err
}

// Create records a new container; AlreadyExists when the ID is taken.
func (s *ContainerStore) Create(ctx context.Context, c containers.Container) (containers.Container, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return containers.Container{}, err
	}
	if err := validateContainer(c); err != nil {
		return containers.Container{}, fmt.Errorf("create container: %w", err)
	}
	now := time.Now().UTC()
	c.CreatedAt, c.UpdatedAt = now, now
	err = s.db.update(func(tx *bolt.Tx) error {
		cb, err := createBucket(tx, []byte(ns), bucketKeyContainers)
		if err != nil {
			return err
		}
		if cb.Bucket([]byte(c.ID)) != nil {
			return fmt.Errorf("container %q in namespace %q: %w", c.ID, ns, errdefs.ErrAlreadyExists)
		}
		b, err := cb.CreateBucket([]byte(c.ID))
		if err != nil {
			return err
		}
		return writeContainer(b, c)
	})
	if err != nil {
		return containers.Container{}, err
	}
	s.db.publish(ctx, "/containers/create", &eventstypes.ContainerCreate{
		ID:      c.ID,
		Image:   c.Image,
		Runtime: &eventstypes.ContainerCreate_Runtime{Name: c.Runtime.Name, Options: typeurl.MarshalProto(c.Runtime.Options)},
	})
	return c, nil
}

// Update changes the fields of container c.ID named by fieldpaths, with
// containerd's rules (see containers.Store).
func (s *ContainerStore) Update(ctx context.Context, c containers.Container, fieldpaths ...string) (containers.Container, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return containers.Container{}, err
	}
	if c.ID == "" {
		return containers.Container{}, fmt.Errorf("update container: ID is required: %w", errdefs.ErrInvalidArgument)
	}
	var updated containers.Container
	err = s.db.update(func(tx *bolt.Tx) error {
		b := bucket(tx, []byte(ns), bucketKeyContainers, []byte(c.ID))
		if b == nil {
			return s.db.notFoundElsewhere(tx, ns, "container", c.ID, bucketKeyContainers, []byte(c.ID))
		}
		cur, err := readContainer(c.ID, b)
		if err != nil {
			return err
		}
		if updated, err = mergeContainer(cur, c, fieldpaths); err != nil {
			return err
		}
		if err := validateContainer(updated); err != nil {
			return fmt.Errorf("update container: %w", err)
		}
		updated.UpdatedAt = time.Now().UTC()
		return writeContainer(b, updated)
	})
	if err != nil {
		return containers.Container{}, err
	}
	s.db.publish(ctx, "/containers/update", &eventstypes.ContainerUpdate{
		ID: updated.ID, Image: updated.Image, Labels: updated.Labels, SnapshotKey: updated.SnapshotKey,
	})
	return updated, nil
}

// Delete removes container id. Its snapshot goes at the next collection
// unless something else refers to it.
func (s *ContainerStore) Delete(ctx context.Context, id string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	err = s.db.update(func(tx *bolt.Tx) error {
		b := bucket(tx, []byte(ns), bucketKeyContainers)
		if b == nil || b.Bucket([]byte(id)) == nil {
			return s.db.notFoundElsewhere(tx, ns, "container", id, bucketKeyContainers, []byte(id))
		}
		return b.DeleteBucket([]byte(id))
	})
	if err != nil {
		return err
	}
	s.db.publish(ctx, "/containers/delete", &eventstypes.ContainerDelete{ID: id})
	return s.db.afterDelete(ctx, false)
}

// mergeContainer applies the field mask to cur from upd.
func mergeContainer(cur, upd containers.Container, fieldpaths []string) (containers.Container, error) {
	if len(fieldpaths) == 0 {
		// A full replace must not silently drop a change to an immutable
		// field, so that they can become mutable later (containerd's rule).
		if upd.Snapshotter != cur.Snapshotter {
			return cur, fmt.Errorf("container %q: container.Snapshotter field is immutable (%q, not %q): %w",
				cur.ID, cur.Snapshotter, upd.Snapshotter, errdefs.ErrInvalidArgument)
		}
		if upd.Runtime.Name != cur.Runtime.Name {
			return cur, fmt.Errorf("container %q: container.Runtime.Name field is immutable (%q, not %q): %w",
				cur.ID, cur.Runtime.Name, upd.Runtime.Name, errdefs.ErrInvalidArgument)
		}
		fieldpaths = replaceablePaths
	}
	for _, p := range fieldpaths {
		switch {
		case p == "labels" || strings.HasPrefix(p, "labels."):
			cur.Labels, _, _ = applyMapPaths("labels", cur.Labels, upd.Labels, []string{p})
		case p == "extensions":
			cur.Extensions = maps.Clone(upd.Extensions)
		case strings.HasPrefix(p, "extensions."):
			key := strings.TrimPrefix(p, "extensions.")
			if ext := upd.Extensions[key]; !anyIsNil(ext) {
				if cur.Extensions == nil {
					cur.Extensions = map[string]typeurl.Any{}
				}
				cur.Extensions[key] = ext
			} else {
				delete(cur.Extensions, key)
			}
		case p == "spec":
			cur.Spec = upd.Spec
		case p == "image":
			cur.Image = upd.Image
		case p == "snapshotkey":
			cur.SnapshotKey = upd.SnapshotKey
		default:
			return cur, fmt.Errorf("cannot update %q field on container %q (mutable: %s, labels.KEY, extensions.KEY): %w",
				p, cur.ID, strings.Join(replaceablePaths, ", "), errdefs.ErrInvalidArgument)
		}
	}
	return cur, nil
}

func validateContainer(c containers.Container) error {
	if err := identifiers.Validate(c.ID); err != nil {
		return fmt.Errorf("container ID: %w", err)
	}
	if err := labels.ValidateAll(c.Labels); err != nil {
		return fmt.Errorf("container %q: %w", c.ID, err)
	}
	for k := range c.Extensions {
		if k == "" {
			return fmt.Errorf("container %q: extension names must not be empty: %w", c.ID, errdefs.ErrInvalidArgument)
		}
	}
	switch {
	case c.Runtime.Name == "":
		return fmt.Errorf("container %q: runtime name must be set: %w", c.ID, errdefs.ErrInvalidArgument)
	case anyIsNil(c.Spec):
		return fmt.Errorf("container %q: spec must be set: %w", c.ID, errdefs.ErrInvalidArgument)
	case c.SnapshotKey != "" && c.Snapshotter == "":
		return fmt.Errorf("container %q: snapshotter must be set with snapshot key %q: %w", c.ID, c.SnapshotKey, errdefs.ErrInvalidArgument)
	}
	return nil
}

func writeContainer(b *bolt.Bucket, c containers.Container) error {
	if err := writeTimestamps(b, c.CreatedAt, c.UpdatedAt); err != nil {
		return err
	}
	if err := writeMap(b, bucketKeyLabels, c.Labels); err != nil {
		return err
	}
	for k, v := range map[string]string{
		string(keyContainerImage): c.Image, string(keyContainerSnapshotter): c.Snapshotter,
		string(keyContainerSnapshotKey): c.SnapshotKey, string(keyContainerSandbox): c.SandboxID,
	} {
		if err := putOrDelete(b, []byte(k), []byte(v)); err != nil {
			return err
		}
	}
	if err := writeAny(b, keyContainerSpec, c.Spec); err != nil {
		return err
	}
	if err := recreateBucket(b, bucketKeyContainerRuntime, func(rb *bolt.Bucket) error {
		if err := rb.Put(keyRuntimeName, []byte(c.Runtime.Name)); err != nil {
			return err
		}
		return writeAny(rb, keyRuntimeOptions, c.Runtime.Options)
	}); err != nil {
		return err
	}
	return recreateBucket(b, bucketKeyContainerExtensions, func(eb *bolt.Bucket) error {
		for name, ext := range c.Extensions {
			if err := writeAny(eb, []byte(name), ext); err != nil {
				return fmt.Errorf("extension %q: %w", name, err)
			}
		}
		return nil
	})
}

func readContainer(id string, b *bolt.Bucket) (containers.Container, error) {
	c := containers.Container{
		ID:          id,
		Labels:      readMap(b, bucketKeyLabels),
		Image:       string(b.Get(keyContainerImage)),
		Snapshotter: string(b.Get(keyContainerSnapshotter)),
		SnapshotKey: string(b.Get(keyContainerSnapshotKey)),
		SandboxID:   string(b.Get(keyContainerSandbox)),
		CreatedAt:   readTimestamp(b, keyCreatedAt),
		UpdatedAt:   readTimestamp(b, keyUpdatedAt),
	}
	var err error
	if c.Spec, err = readAny(b, keyContainerSpec); err != nil {
		return c, fmt.Errorf("container %q: spec: %w", id, err)
	}
	if rb := b.Bucket(bucketKeyContainerRuntime); rb != nil {
		c.Runtime.Name = string(rb.Get(keyRuntimeName))
		if c.Runtime.Options, err = readAny(rb, keyRuntimeOptions); err != nil {
			return c, fmt.Errorf("container %q: runtime options: %w", id, err)
		}
	}
	if eb := b.Bucket(bucketKeyContainerExtensions); eb != nil {
		c.Extensions = map[string]typeurl.Any{}
		err = eb.ForEach(func(k, _ []byte) error {
			ext, err := readAny(eb, k)
			c.Extensions[string(k)] = ext
			return err
		})
		if err != nil {
			return c, fmt.Errorf("container %q: extensions: %w", id, err)
		}
	}
	return c, nil
}

// writeAny stores a as a marshalled google.protobuf.Any under key, or
// removes key when a is nil.
func writeAny(b *bolt.Bucket, key []byte, a typeurl.Any) error {
	if anyIsNil(a) {
		return putOrDelete(b, key, nil)
	}
	v, err := proto.Marshal(typeurl.MarshalProto(a))
	if err != nil {
		return err
	}
	return b.Put(key, v)
}

// readAny returns the Any stored under key; a nil interface when absent,
// so that a missing spec or option stays missing.
func readAny(b *bolt.Bucket, key []byte) (typeurl.Any, error) {
	v := b.Get(key)
	if v == nil {
		return nil, nil
	}
	a := &anypb.Any{}
	if err := proto.Unmarshal(v, a); err != nil {
		return nil, err
	}
	return a, nil
}

// anyIsNil reports whether a is nil or a nil pointer in an interface (a
// *anypb.Any left unset in a request).
func anyIsNil(a typeurl.Any) bool {
	if a == nil {
		return true
	}
	v := reflect.ValueOf(a)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

func putOrDelete(b *bolt.Bucket, key, v []byte) error {
	if len(v) == 0 {
		return b.Delete(key)
	}
	return b.Put(key, v)
}

// recreateBucket replaces sub-bucket name of b with one filled by fill.
func recreateBucket(b *bolt.Bucket, name []byte, fill func(*bolt.Bucket) error) error {
	if b.Bucket(name) != nil {
		if err := b.DeleteBucket(name); err != nil {
			return err
		}
	}
	nb, err := b.CreateBucket(name)
	if err != nil {
		return err
	}
	return fill(nb)
}

// containerAdaptor exposes containerd's container filter fields (id,
// image, runtime.name, labels.KEY) and berth's snapshotter, snapshotkey and
// sandbox.
func containerAdaptor(c containers.Container) filters.Adaptor {
	return filters.AdaptorFunc(func(fp []string) (string, bool) {
		if len(fp) == 0 {
			return "", false
		}
		switch fp[0] {
		case "id":
			return c.ID, c.ID != ""
		case "image":
			return c.Image, c.Image != ""
		case "runtime":
			if len(fp) == 2 && fp[1] == "name" {
				return c.Runtime.Name, c.Runtime.Name != ""
			}
		case "labels":
			return mapField(c.Labels, fp[1:])
		case "snapshotter":
			return c.Snapshotter, c.Snapshotter != ""
		case "snapshotkey":
			return c.SnapshotKey, c.SnapshotKey != ""
		case "sandbox":
			return c.SandboxID, c.SandboxID != ""
		}
		return "", false
	})
}

// containerRoots lists what the containers of a namespace keep alive:
// each one's snapshot and the targets of its gc.ref labels. A container is
// a root itself: nothing but Delete removes it.
func containerRoots(ns string, nb *bolt.Bucket) []gc.Node {
	cb := nb.Bucket(bucketKeyContainers)
	if cb == nil {
		return nil
	}
	var roots []gc.Node
	_ = cb.ForEachBucket(func(id []byte) error {
		b := cb.Bucket(id)
		if sn, key := b.Get(keyContainerSnapshotter), b.Get(keyContainerSnapshotKey); len(sn) > 0 && len(key) > 0 {
			roots = append(roots, snapshotNode(ns, string(sn), string(key)))
		}
		roots = append(roots, labelRefs(ns, readMap(b, bucketKeyLabels))...)
		return nil
	})
	return roots
}
