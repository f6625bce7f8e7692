package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// propagations are the mount propagation modes a volume may ask for.
var propagations = []string{"private", "rprivate", "shared", "rshared", "slave", "rslave"}

// ParseVolume parses docker's `-v host:ctr[:opts]` into a bind mount of
// the host path on the container path, with options "rbind", "ro" or "rw"
// (the default), and a propagation mode (rprivate, docker's default,
// unless opts names another). opts is a comma-separated list of ro, rw and
// one of private, rprivate, shared, rshared, slave, rslave.
//
// The host path is absolute, or starts with "." and is taken relative to
// the working directory, as docker's CLI does; any other name is a named
// volume. The container path must be absolute and not "/".
//
// The host path must exist: docker creates a missing one as an empty
// root-owned directory, which silently turns a typo into an empty mount;
// berth refuses, with a NotFound error naming the path and saying to
// create it. Named volumes and anonymous volumes (`-v /ctr`) are not
// supported, a NotImplemented error; other mistakes are InvalidArgument.
func ParseVolume(v string) (specs.Mount, error) {
	if strings.ContainsRune(v, 0) {
		return specs.Mount{}, fmt.Errorf("volume %q: NUL byte in a path: %w", v, errdefs.ErrInvalidArgument)
	}
	parts := strings.Split(v, ":")
	if len(parts) == 1 {
		if path.IsAbs(v) {
			return specs.Mount{}, fmt.Errorf("volume %q: anonymous volumes are not supported, bind a host directory with -v /host/dir:%s: %w", v, v, errdefs.ErrNotImplemented)
		}
		return specs.Mount{}, fmt.Errorf("volume %q: want host:container[:options]: %w", v, errdefs.ErrInvalidArgument)
	}
	if len(parts) > 3 {
		return specs.Mount{}, fmt.Errorf("volume %q: too many ':', want host:container[:options]: %w", v, errdefs.ErrInvalidArgument)
	}
	src, dst := parts[0], parts[1]
	if src == "" {
		return specs.Mount{}, fmt.Errorf("volume %q: empty host path: %w", v, errdefs.ErrInvalidArgument)
	}
	if !path.IsAbs(dst) {
		return specs.Mount{}, fmt.Errorf("volume %q: container path %q is not absolute: %w", v, dst, errdefs.ErrInvalidArgument)
	}
	if dst = path.Clean(dst); dst == "/" {
		return specs.Mount{}, fmt.Errorf("volume %q: cannot mount over the container's root: %w", v, errdefs.ErrInvalidArgument)
	}
	var opts []string
	if len(parts) == 3 {
		opts = strings.Split(parts[2], ",")
	}
	options, err := volumeOptions(opts)
	if err != nil {
		return specs.Mount{}, fmt.Errorf("volume %q: %w", v, err)
	}
	src, err = hostPath(src)
	if err != nil {
		return specs.Mount{}, fmt.Errorf("volume %q: %w", v, err)
	}
	return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: options}, nil
}

// volumeOptions turns a volume's options into mount options.
func volumeOptions(opts []string) ([]string, error) {
	mode, propagation := "", ""
	for _, o := range opts {
		switch {
		case o == "ro" || o == "rw":
			if mode != "" {
				return nil, fmt.Errorf("options %q: more than one of ro and rw: %w", opts, errdefs.ErrInvalidArgument)
			}
			mode = o
		case slices.Contains(propagations, o):
			if propagation != "" {
				return nil, fmt.Errorf("options %q: more than one propagation mode: %w", opts, errdefs.ErrInvalidArgument)
			}
			propagation = o
		default:
			return nil, fmt.Errorf("option %q: unknown, want ro, rw or one of %s: %w", o, strings.Join(propagations, ", "), errdefs.ErrInvalidArgument)
		}
	}
	if mode == "" {
		mode = "rw"
	}
	if propagation == "" {
		propagation = "rprivate"
	}
	return []string{"rbind", mode, propagation}, nil
}

// hostPath returns the volume's host path, absolute and cleaned, once it
// is known to exist.
func hostPath(src string) (string, error) {
	switch {
	case path.IsAbs(src):
		src = filepath.Clean(src)
	case strings.HasPrefix(src, "."):
		abs, err := filepath.Abs(src)
		if err != nil {
			return "", fmt.Errorf("host path %q: %w", src, err)
		}
		src = abs
	default:
		return "", fmt.Errorf("%q is a named volume: named volumes are not supported, bind a host path (absolute, or starting with ./): %w", src, errdefs.ErrNotImplemented)
	}
	if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return "", fmt.Errorf("host path %q does not exist: create it first (berth does not create bind-mount sources): %w", src, errdefs.ErrNotFound)
	} else if err != nil {
		return "", fmt.Errorf("host path %q: %v: %w", src, err, errdefs.ErrInvalidArgument)
	}
	return src, nil
}
