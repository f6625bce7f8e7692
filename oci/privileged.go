package oci

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// WithPrivileged is docker's and nerdctl's --privileged: every capability
// of this process's bounding set (what runc started from here can grant),
// no seccomp filter, no AppArmor or SELinux label, no masked or read-only
// paths, /sys and /sys/fs/cgroup writable, and the host's devices, all of
// them allowed by the device cgroup. The namespaces stay the container's.
func WithPrivileged() SpecOpt {
	return func(ctx context.Context, s *specs.Spec) error {
		caps, err := currentCapabilities()
		if err != nil {
			return fmt.Errorf("privileged: %w", err)
		}
		devices, err := hostDevices("/dev")
		if err != nil {
			return fmt.Errorf("privileged: host devices: %w", err)
		}
		c := ensureCapabilities(s)
		c.Bounding, c.Effective, c.Permitted = slices.Clone(caps), slices.Clone(caps), slices.Clone(caps)

		p := ensureProcess(s)
		p.ApparmorProfile, p.SelinuxLabel = "", ""

		l := ensureLinux(s)
		l.MaskedPaths, l.ReadonlyPaths = nil, nil
		l.Devices = mergeDevices(l.Devices, devices)
		ensureResources(s).Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: rwm}}

		for i, m := range s.Mounts {
			if d := path.Clean(m.Destination); d == "/sys" || d == "/sys/fs/cgroup" {
				s.Mounts[i].Options = writable(m.Options)
			}
		}
		return setSeccomp(ctx, s, nil)
	}
}

// writable returns mount options with "ro" turned into "rw".
func writable(options []string) []string {
	out := slices.DeleteFunc(slices.Clone(options), func(o string) bool { return o == "ro" || o == "rw" })
	return append(out, "rw")
}

// mergeDevices adds devices to have, but not over a device already at the
// same path: one the caller chose stays.
func mergeDevices(have, devices []specs.LinuxDevice) []specs.LinuxDevice {
	for _, d := range devices {
		if !slices.ContainsFunc(have, func(h specs.LinuxDevice) bool { return h.Path == d.Path }) {
			have = append(have, d)
		}
	}
	return have
}

// devSkip are the directories of /dev that hold no device of the host's
// to pass on: mounts the container gets its own of, and the bookkeeping of
// udev and LXD.
var devSkip = []string{"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"}

// hostDevices lists the character and block devices under dir, a /dev,
// with their paths under /dev in the container. Symbolic links are not
// followed, so that each device is listed once, under its own name; the
// console is left out, runc makes the container's own.
func hostDevices(dir string) ([]specs.LinuxDevice, error) {
	var out []specs.LinuxDevice
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // gone since its directory was read
			}
			return err
		}
		if d.IsDir() {
			if p != dir && slices.Contains(devSkip, d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type()&(fs.ModeDevice|fs.ModeCharDevice) == 0 || (d.Name() == "console" && filepath.Dir(p) == dir) {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		dev, err := deviceAt(p, path.Join("/dev", filepath.ToSlash(rel)))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		out = append(out, dev)
		return nil
	})
	return out, err
}

// deviceAt describes the device node at hostPath for the container path
// ctrPath.
func deviceAt(hostPath, ctrPath string) (specs.LinuxDevice, error) {
	var st unix.Stat_t
	if err := unix.Lstat(hostPath, &st); err != nil {
		return specs.LinuxDevice{}, &os.PathError{Op: "lstat", Path: hostPath, Err: err}
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default: // replaced since the directory was read
		return specs.LinuxDevice{}, &os.PathError{Op: "device", Path: hostPath, Err: fs.ErrNotExist}
	}
	mode := fs.FileMode(st.Mode & 0o7777)
	uid, gid := st.Uid, st.Gid
	rdev := uint64(st.Rdev) // not a uint64 on every architecture
	return specs.LinuxDevice{
		Path:     ctrPath,
		Type:     typ,
		Major:    int64(unix.Major(rdev)),
		Minor:    int64(unix.Minor(rdev)),
		FileMode: &mode,
		UID:      &uid,
		GID:      &gid,
	}, nil
}
