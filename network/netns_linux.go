package network

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// pinNetNS bind-mounts the network namespace src onto the file dst, so
// that the namespace outlives the container's processes until unpinNetNS.
func pinNetNS(src, dst string) error {
	if err := checkNetNS(src); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("pin network namespace %s: %w", src, err)
	}
	// A pin left by an interrupted Setup would hide this one.
	if err := unpinNetNS(dst); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o400)
	if err != nil {
		return fmt.Errorf("pin network namespace %s: %w", src, err)
	}
	f.Close()
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		os.Remove(dst)
		return fmt.Errorf("pin network namespace %s: bind mount on %s: %w", src, dst, err)
	}
	return nil
}

// unpinNetNS unmounts and removes a pin; a missing one is no error.
func unpinNetNS(path string) error {
	for range 8 { // a pin is mounted once; the loop only guards against stacks
		err := unix.Unmount(path, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break
		}
		if err != nil {
			return fmt.Errorf("unpin network namespace %s: %w", path, err)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unpin network namespace: %w", err)
	}
	return nil
}

// checkNetNS returns nil when path is a network namespace: a namespace
// file whose type the kernel reports as CLONE_NEWNET.
func checkNetNS(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("network namespace: %w", err)
	}
	defer f.Close()
	typ, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil {
		return fmt.Errorf("%s is not a namespace (NS_GET_NSTYPE: %v)", path, err)
	}
	if typ != unix.CLONE_NEWNET {
		return fmt.Errorf("%s is a namespace of type %#x, not a network namespace", path, typ)
	}
	return nil
}
