// Package labels validates object labels and names the labels with a meaning
// to berth itself (garbage collection roots and references).
package labels

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// MaxSize is the largest key plus value length of one label, in bytes.
const MaxSize = 4096

// Labels that steer garbage collection, as containerd defines them.
const (
	// GCRoot marks an object as a root: it is kept whatever references it.
	GCRoot = "containerd.io/gc.root"
	// GCExpire on a lease is an RFC 3339 time after which the lease is removed.
	GCExpire = "containerd.io/gc.expire"
	// GCRefContent prefixes labels whose value is a content digest the
	// labelled object keeps alive (gc.ref.content.l.0, gc.ref.content.config...).
	GCRefContent = "containerd.io/gc.ref.content"
	// GCRefSnapshot prefixes labels naming a snapshot kept alive, by
	// snapshotter: containerd.io/gc.ref.snapshot.overlayfs=KEY.
	GCRefSnapshot = "containerd.io/gc.ref.snapshot"
)

// Validate returns InvalidArgument when a label's key is empty or key plus
// value is over MaxSize bytes.
func Validate(k, v string) error {
	if k == "" {
		return fmt.Errorf("label key must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	if len(k)+len(v) > MaxSize {
		short := k
		if len(short) > 64 {
			short = short[:64] + "..."
		}
		return fmt.Errorf("label %q: key and value are %d bytes, over the maximum of %d: %w", short, len(k)+len(v), MaxSize, errdefs.ErrInvalidArgument)
	}
	return nil
}

// ValidateAll validates every label of m.
func ValidateAll(m map[string]string) error {
	for k, v := range m {
		if err := Validate(k, v); err != nil {
			return err
		}
	}
	return nil
}
