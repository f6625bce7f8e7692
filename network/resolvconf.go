package network

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// Where the host's resolver configuration is read from. With
// systemd-resolved, /etc/resolv.conf names only its stub, 127.0.0.53, and
// the upstream servers are in the second file.
var (
	hostResolvConf     = "/etc/resolv.conf"
	resolvedResolvConf = "/run/systemd/resolve/resolv.conf"
)

// ResolvConf returns a resolv.conf for a bridge container: the host's,
// without the loopback name servers, which are unreachable from the
// container's network namespace. When the host only has loopback ones
// and systemd-resolved's upstream list exists, that list is used. When
// no server is left, the result has none (the resolver then tries the
// container's own loopback) but keeps search and options.
func ResolvConf() ([]byte, error) {
	host, err := os.ReadFile(hostResolvConf)
	if err != nil {
		return nil, fmt.Errorf("resolv.conf for containers: %w", err)
	}
	out, servers := filterResolvConf(host, hostResolvConf)
	if servers == 0 {
		if upstream, err := os.ReadFile(resolvedResolvConf); err == nil {
			if out2, n := filterResolvConf(upstream, resolvedResolvConf); n > 0 {
				return out2, nil
			}
		}
	}
	return out, nil
}

// filterResolvConf drops the loopback name servers of src and says how
// many servers are left.
func filterResolvConf(src []byte, from string) ([]byte, int) {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by berth from %s, loopback name servers removed.\n", from)
	servers := 0
	for line := range strings.Lines(string(src)) {
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == "nameserver" {
			if isLoopback(fields[1]) {
				continue
			}
			servers++
		}
		b.WriteString(strings.TrimRight(line, "\r\n"))
		b.WriteByte('\n')
	}
	return []byte(b.String()), servers
}

func isLoopback(s string) bool {
	s, _, _ = strings.Cut(s, "%") // fe80::1%eth0
	a, err := netip.ParseAddr(s)
	return err == nil && a.Unmap().IsLoopback()
}

// ResolvConfPath is where WriteResolvConf writes the container's
// resolv.conf, for the CLI to bind-mount.
func (m *Manager) ResolvConfPath(ns, id string) (string, error) {
	if _, err := CNIContainerID(ns, id); err != nil {
		return "", err
	}
	return filepath.Join(m.cfg.StateDir, ns, id+".resolv.conf"), nil
}

// WriteResolvConf writes ResolvConf to ResolvConfPath and returns the
// path. Teardown leaves it, as a stopped container's spec still mounts it
// on the next start; RemoveResolvConf removes it with the container.
func (m *Manager) WriteResolvConf(ns, id string) (string, error) {
	path, err := m.ResolvConfPath(ns, id)
	if err != nil {
		return "", err
	}
	b, err := ResolvConf()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("resolv.conf of container %q in namespace %q: %w", id, ns, err)
	}
	if err := writeFileAtomic(path, b, 0o644); err != nil {
		return "", fmt.Errorf("resolv.conf of container %q in namespace %q: %w", id, ns, err)
	}
	return path, nil
}

// RemoveResolvConf removes what WriteResolvConf wrote; a missing file is
// no error.
func (m *Manager) RemoveResolvConf(ns, id string) error {
	path, err := m.ResolvConfPath(ns, id)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("resolv.conf of container %q in namespace %q: %w", id, ns, err)
	}
	return nil
}
