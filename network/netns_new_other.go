//go:build !linux

package network

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// NewNetNS is Linux only.
func NewNetNS(path string) error {
	return fmt.Errorf("create network namespace %s: %w", path, errdefs.ErrNotImplemented)
}

// RemoveNetNS is Linux only.
func RemoveNetNS(string) error { return nil }

// IsNetNS is Linux only.
func IsNetNS(string) bool { return false }
