package mount

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/berth-dev/berth/log"
)

var tempLocation = struct {
	sync.RWMutex
	dir string
}{dir: os.TempDir()}

// SetTempMountLocation sets the directory in which WithTempMount creates
// its mount points; the default is os.TempDir(). The daemon points it into
// its state directory so that what a crash leaves is found in one place.
func SetTempMountLocation(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return err
	}
	tempLocation.Lock()
	defer tempLocation.Unlock()
	tempLocation.dir = abs
	return nil
}

// WithTempMount mounts mounts on a new temporary directory, calls fn with
// it, then unmounts everything below that directory and removes it, whether
// fn failed or not. The directory is kept only when something stays
// mounted on it, since removing it would remove the mounted files.
func WithTempMount(ctx context.Context, mounts []Mount, fn func(root string) error) (err error) {
	tempLocation.RLock()
	parent := tempLocation.dir
	tempLocation.RUnlock()
	root, err := os.MkdirTemp(parent, "berth-mount-")
	if err != nil {
		return fmt.Errorf("create temporary mount point: %w", err)
	}
	defer func() {
		if cerr := releaseTemp(root); cerr != nil {
			log.G(ctx).Warn("temporary mount left behind", "path", root, "error", cerr)
			err = errors.Join(err, cerr)
		}
	}()
	if err := All(mounts, root); err != nil {
		return err
	}
	return fn(root)
}

// releaseTemp unmounts everything below root, newest first: mounts and
// whatever fn mounted too. Then it removes root.
func releaseTemp(root string) error {
	if err := UnmountAll(root, 0); err != nil {
		return err
	}
	return os.RemoveAll(root)
}
