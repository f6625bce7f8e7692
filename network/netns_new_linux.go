package network

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// NewNetNS creates a network namespace with no process in it and pins it
// on the file path (a bind mount of the namespace), where it lives until
// RemoveNetNS, whatever processes join and leave it. This is what a pod
// sandbox needs: its network is set up before its first process starts,
// and torn down after its last one is gone.
//
// The namespace is made by a thread of its own that unshares, pins and
// returns to berthd's namespace; a thread that cannot return is not given
// back to the Go scheduler, so no other goroutine ever runs in the new
// namespace.
func NewNetNS(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return fmt.Errorf("create network namespace %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("create network namespace %s: %w", path, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err, back := unshareAndPin(path)
		if back {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("create network namespace %s: %w", path, err)
	}
	return nil
}

// unshareAndPin runs on a locked thread: it moves the thread into a new
// network namespace, bind-mounts that namespace on path and moves the
// thread back. back reports whether the thread is in its original
// namespace again.
func unshareAndPin(path string) (err error, back bool) {
	self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
	orig, err := unix.Open(self, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", self, err), true
	}
	defer unix.Close(orig)
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare: %w", err), true
	}
	mountErr := unix.Mount(self, path, "", unix.MS_BIND, "")
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("return to the original network namespace: %w", err), false
	}
	if mountErr != nil {
		return fmt.Errorf("bind mount on %s: %w", path, mountErr), true
	}
	return nil, true
}

// RemoveNetNS unpins a namespace NewNetNS made and removes its file; the
// namespace goes once no process is in it. A missing file is no error.
func RemoveNetNS(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return unpinNetNS(path)
}

// IsNetNS reports whether path is a network namespace (a pin that is
// still mounted).
func IsNetNS(path string) bool { return checkNetNS(path) == nil }
