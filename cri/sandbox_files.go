package cri

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-dev/berth/log"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A pod's files, shared by its containers: /etc/hostname, /etc/hosts and
// /etc/resolv.conf under <root>/sandboxes/<id>, and /dev/shm, a tmpfs
// mounted on <state>/sandboxes/<id>/shm (the host's /dev/shm with the
// host's IPC namespace). Containers get them as bind mounts unless their
// config mounts something else there.

// Host files a pod's files start from; variables for tests.
var (
	hostHosts      = "/etc/hosts"
	hostResolvConf = "/etc/resolv.conf"
)

// shmSize is the size of a pod's /dev/shm, docker's and containerd's.
const shmSize = "65536k"

func (s *Service) hostnamePath(id string) string { return filepath.Join(s.sandboxRoot(id), "hostname") }
func (s *Service) hostsPath(id string) string    { return filepath.Join(s.sandboxRoot(id), "hosts") }
func (s *Service) resolvConfPath(id string) string {
	return filepath.Join(s.sandboxRoot(id), "resolv.conf")
}
func (s *Service) shmPath(id string) string { return filepath.Join(s.sandboxState(id), "shm") }

// writeSandboxFiles writes the pod's hostname, hosts and resolv.conf and
// mounts its /dev/shm.
func (s *Service) writeSandboxFiles(ctx context.Context, sb *sandbox, u *undo) error {
	id := sb.meta.ID
	if err := os.MkdirAll(s.sandboxRoot(id), 0o755); err != nil {
		return err
	}
	hostname, err := sb.hostname()
	if err != nil {
		return err
	}
	if err := os.WriteFile(s.hostnamePath(id), []byte(hostname+"\n"), 0o644); err != nil {
		return fmt.Errorf("pod %q: write hostname: %w", sb.meta.Name, err)
	}
	hosts, err := os.ReadFile(hostHosts)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pod %q: read the host's %s: %w", sb.meta.Name, hostHosts, err)
	}
	if err := os.WriteFile(s.hostsPath(id), hosts, 0o644); err != nil {
		return fmt.Errorf("pod %q: write hosts: %w", sb.meta.Name, err)
	}
	resolv, err := resolvConf(sb.config.GetDnsConfig())
	if err != nil {
		return fmt.Errorf("pod %q: %w", sb.meta.Name, err)
	}
	if err := os.WriteFile(s.resolvConfPath(id), resolv, 0o644); err != nil {
		return fmt.Errorf("pod %q: write resolv.conf: %w", sb.meta.Name, err)
	}
	if sb.hostIPC() {
		return nil
	}
	shm := s.shmPath(id)
	if err := os.MkdirAll(shm, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("shm", shm, "tmpfs", unix.MS_NOEXEC|unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size="+shmSize); err != nil {
		return fmt.Errorf("pod %q: mount its /dev/shm on %s: %w", sb.meta.Name, shm, err)
	}
	u.add(func(ctx context.Context) { s.removeSandboxState(ctx, id) })
	return nil
}

// removeSandboxState unmounts the pod's /dev/shm and removes its state
// directory.
func (s *Service) removeSandboxState(ctx context.Context, id string) {
	shm := s.shmPath(id)
	for range 4 {
		if err := unix.Unmount(shm, unix.MNT_DETACH); err != nil {
			break
		}
	}
	if err := os.RemoveAll(s.sandboxState(id)); err != nil {
		log.G(ctx).Warn("CRI: remove pod state", "id", id, "error", err)
	}
}

// hostname is the pod's hostname: the config's, or the node's for a pod
// on the host's network that gives none.
func (sb *sandbox) hostname() (string, error) {
	if h := sb.config.GetHostname(); h != "" {
		return h, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("pod %q: the node's hostname: %w", sb.meta.Name, err)
	}
	return h, nil
}

// resolvConf is the pod's resolv.conf: the DNS config's servers, searches
// and options, or the host's file when the pod has no DNS config.
func resolvConf(dns *runtime.DNSConfig) ([]byte, error) {
	if dns == nil {
		b, err := os.ReadFile(hostResolvConf)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read the host's %s: %w", hostResolvConf, err)
		}
		return b, nil
	}
	var b strings.Builder
	if len(dns.GetSearches()) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(dns.GetSearches(), " "))
	}
	for _, ns := range dns.GetServers() {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if len(dns.GetOptions()) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(dns.GetOptions(), " "))
	}
	return []byte(b.String()), nil
}
