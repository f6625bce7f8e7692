package stdio

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
)

// Output URI schemes; a target without a scheme is a FIFO path.
const (
	schemeFile   = "file"
	schemeBinary = "binary"
)

// Validate checks the output targets of cfg before anything is started:
// file:// and binary:// URIs must name an absolute path; stdout and stderr
// cannot go to two different logging binaries, and a terminal's output
// cannot go to one (the shim has nothing to hand it but the pty).
func Validate(cfg Config) error {
	for name, target := range map[string]string{"stdout": cfg.Stdout, "stderr": cfg.Stderr} {
		if _, _, err := parseTarget(target); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if isBinary(cfg.Stdout) && isBinary(cfg.Stderr) && cfg.Stdout != cfg.Stderr {
		return fmt.Errorf("stdout %q and stderr %q name different logging binaries: %w", cfg.Stdout, cfg.Stderr, errdefs.ErrInvalidArgument)
	}
	if cfg.Terminal && isBinary(cfg.Stdout) {
		return fmt.Errorf("stdout %q: a terminal's output to a logging binary: %w", cfg.Stdout, errdefs.ErrNotImplemented)
	}
	return nil
}

// parseTarget splits an output target into its scheme ("" for a FIFO
// path) and path.
func parseTarget(target string) (scheme string, u *url.URL, err error) {
	if !strings.Contains(target, "://") {
		return "", nil, nil
	}
	u, err = url.Parse(target)
	if err != nil {
		return "", nil, fmt.Errorf("output %q: %v: %w", target, err, errdefs.ErrInvalidArgument)
	}
	switch u.Scheme {
	case schemeFile, schemeBinary:
	default:
		return "", nil, fmt.Errorf("output %q: scheme %q (known: file, binary): %w", target, u.Scheme, errdefs.ErrNotImplemented)
	}
	if u.Host != "" || !filepath.IsAbs(u.Path) {
		return "", nil, fmt.Errorf("output %q: want %s:///absolute/path: %w", target, u.Scheme, errdefs.ErrInvalidArgument)
	}
	return u.Scheme, u, nil
}

func isBinary(target string) bool {
	scheme, _, err := parseTarget(target)
	return err == nil && scheme == schemeBinary
}

func isFile(target string) bool {
	scheme, _, err := parseTarget(target)
	return err == nil && scheme == schemeFile
}

// openOutput opens where a copied output stream goes: a file:// URI,
// appended to, its parent directories created; or a FIFO path opened
// read-write, which never blocks and never fails with EPIPE when the reader
// goes away.
func openOutput(target string) (io.WriteCloser, error) {
	scheme, u, err := parseTarget(target)
	if err != nil {
		return nil, err
	}
	switch scheme {
	case schemeFile:
		if err := os.MkdirAll(filepath.Dir(u.Path), 0o755); err != nil {
			return nil, fmt.Errorf("open output %q: %w", target, err)
		}
		f, err := os.OpenFile(u.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return nil, fmt.Errorf("open output %q: %w", target, err)
		}
		return f, nil
	case schemeBinary:
		// Only a terminal's output is copied, and Validate refuses it.
		return nil, fmt.Errorf("output %q: copy to a logging binary: %w", target, errdefs.ErrNotImplemented)
	}
	f, err := fifo.OpenFifo(context.Background(), target, syscall.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open output fifo %q: %w", target, err)
	}
	return f, nil
}
