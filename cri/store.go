package cri

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
)

// The CRI's objects live in three places:
//
//   - the container record in metadata namespace k8s.io (one per pod
//     sandbox, for its pause container, and one per container), labeled
//     io.cri-containerd.kind=sandbox|container as containerd's CRI labels
//     them, so that `ctr -n k8s.io containers ls` shows both. Its
//     extension berth.dev/cri holds what never changes after creation
//     (the CRI config, names, the runtime handler): sandboxMeta or
//     containerMeta as JSON;
//   - a status file, <root>/sandboxes/<id>/status.json or
//     <root>/containers/<id>/status.json, for what changes (state, pid,
//     pod IPs, exit code and times), written atomically at each change;
//   - files a pod or container uses while it exists: its resolv.conf,
//     hosts and hostname under <root>/sandboxes/<id>, its /dev/shm
//     tmpfs and network namespace under <state>/sandboxes/<id>.
//
// In memory, the store below indexes them by ID and reserves names; it is
// rebuilt from the records and status files at start-up (restore.go).

// Labels and extension of the CRI's container records.
const (
	labelKind        = "io.cri-containerd.kind"
	kindSandbox      = "sandbox"
	kindContainer    = "container"
	extensionName    = "berth.dev/cri"
	sandboxMetaType  = "berth.dev/cri/SandboxMetadata"
	containerMetaTyp = "berth.dev/cri/ContainerMetadata"
)

// newID returns a random 64-hex-digit ID, as containerd's CRI makes them.
func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// index finds objects by ID or unique ID prefix and reserves names.
type index[T any] struct {
	mu    sync.RWMutex
	byID  map[string]T
	names map[string]string // name -> ID
	what  string            // "pod sandbox", "container"
}

func newIndex[T any](what string) *index[T] {
	return &index[T]{byID: map[string]T{}, names: map[string]string{}, what: what}
}

// reserve claims name for id; a name held by another ID is AlreadyExists,
// as with containerd.
func (x *index[T]) reserve(name, id string) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if other, ok := x.names[name]; ok && other != id {
		return fmt.Errorf("%s name %q is reserved for %q: %w", x.what, name, other, errdefs.ErrAlreadyExists)
	}
	x.names[name] = id
	return nil
}

func (x *index[T]) release(name string) {
	x.mu.Lock()
	delete(x.names, name)
	x.mu.Unlock()
}

func (x *index[T]) add(id string, v T) {
	x.mu.Lock()
	x.byID[id] = v
	x.mu.Unlock()
}

func (x *index[T]) remove(id string) {
	x.mu.Lock()
	delete(x.byID, id)
	x.mu.Unlock()
}

// get returns the object of id, or of the one ID starting with id.
func (x *index[T]) get(id string) (T, error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var zero T
	if id == "" {
		return zero, fmt.Errorf("%s ID is empty: %w", x.what, errdefs.ErrInvalidArgument)
	}
	if v, ok := x.byID[id]; ok {
		return v, nil
	}
	var found []string
	for k := range x.byID {
		if strings.HasPrefix(k, id) {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 0:
		return zero, fmt.Errorf("%s %q in namespace %q: %w", x.what, id, Namespace, errdefs.ErrNotFound)
	case 1:
		return x.byID[found[0]], nil
	}
	return zero, fmt.Errorf("%s ID prefix %q is ambiguous (%d match): %w", x.what, id, len(found), errdefs.ErrInvalidArgument)
}

// list returns every object, sorted by ID.
func (x *index[T]) list() []T {
	x.mu.RLock()
	defer x.mu.RUnlock()
	ids := make([]string, 0, len(x.byID))
	for id := range x.byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]T, len(ids))
	for i, id := range ids {
		out[i] = x.byID[id]
	}
	return out
}

// writeJSON writes v as JSON to path through a temporary file, so that a
// crash leaves the old content or the new.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// readJSON reads what writeJSON wrote; a missing file is NotFound.
func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", path, errdefs.ErrNotFound)
	} else if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}
