//go:build !linux

package network

import (
	"fmt"

	"github.com/containerd/errdefs"
)

func pinNetNS(src, dst string) error {
	return fmt.Errorf("pin network namespace %s: %w", src, errdefs.ErrNotImplemented)
}

func unpinNetNS(string) error { return nil }

func checkNetNS(path string) error {
	return fmt.Errorf("network namespace %s: %w", path, errdefs.ErrNotImplemented)
}
