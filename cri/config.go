package cri

import (
	"github.com/berth-dev/berth/runtime/handler"
)

// Config is the CRI plugin's configuration: containerd's CRI settings,
// whichever config.toml layout they came from (the daemon reads version 2's
// [plugins."io.containerd.grpc.v1.cri"] and version 3's
// io.containerd.cri.v1.images / io.containerd.cri.v1.runtime into it).
// DefaultConfig holds containerd 1.7's defaults.
type Config struct {
	// SandboxImage is the image of each pod's pause container
	// (sandbox_image; pinned_images.sandbox in version 3).
	SandboxImage string
	// Snapshotter unpacks the images the CRI pulls and holds container
	// root filesystems (containerd.snapshotter).
	Snapshotter string
	// DisableSnapshotAnnotations stops passing image annotations to the
	// snapshotter. Only remote snapshotters read them; berth's take none.
	DisableSnapshotAnnotations bool
	// Containerd holds the runtime handlers (containerd.default_runtime_name,
	// containerd.runtimes.*), read by package runtime/handler.
	Containerd handler.Config
	CNI        CNIConfig
	Registry   RegistryConfig
	// MaxConcurrentDownloads bounds the parallel layer downloads of a pull.
	MaxConcurrentDownloads int

	// StreamServerAddress and StreamServerPort are where the exec, attach
	// and port-forward streaming server listens ("0": any free port).
	StreamServerAddress string
	StreamServerPort    string

	// Container and pod settings, read by the sandbox and container parts.
	EnableSELinux                      bool
	RestrictOOMScoreAdj                bool
	MaxContainerLogLineSize            int
	EnableUnprivilegedPorts            bool
	EnableUnprivilegedICMP             bool
	DeviceOwnershipFromSecurityContext bool
	NetNSMountsUnderStateDir           bool
	// DisableTCPService is accepted for compatibility: berth never serves
	// the CRI over TCP.
	DisableTCPService bool
}

// CNIConfig is the cni table.
type CNIConfig struct {
	// BinDir is where CNI plugin binaries are; BinDirs (containerd 2.1's
	// list form), when set, replaces it.
	BinDir  string
	BinDirs []string
	// ConfDir holds the network configurations (*.conf, *.conflist,
	// *.json); the first MaxConfNum in name order are used.
	ConfDir    string
	MaxConfNum int
}

// PluginDirs are the directories searched for CNI plugins.
func (c CNIConfig) PluginDirs() []string {
	if len(c.BinDirs) > 0 {
		return c.BinDirs
	}
	return []string{c.BinDir}
}

// RegistryConfig is the registry table.
type RegistryConfig struct {
	// ConfigPath is the certs.d directory of hosts.toml files, read at
	// each pull; "" means berth's default, /etc/berth/certs.d.
	ConfigPath string
}

// DefaultHostsDir is the certs.d directory when the config names none.
const DefaultHostsDir = "/etc/berth/certs.d"

// DefaultConfig returns containerd 1.7's CRI defaults (the containerd
// API level berth speaks).
func DefaultConfig() Config {
	return Config{
		SandboxImage:               "registry.k8s.io/pause:3.8",
		Snapshotter:                "overlayfs",
		DisableSnapshotAnnotations: true,
		Containerd:                 handler.Config{DefaultRuntimeName: "runc"},
		CNI:                        CNIConfig{BinDir: "/opt/cni/bin", ConfDir: "/etc/cni/net.d", MaxConfNum: 1},
		MaxConcurrentDownloads:     3,
		StreamServerAddress:        "127.0.0.1",
		StreamServerPort:           "0",
		MaxContainerLogLineSize:    16 * 1024,
		DisableTCPService:          true,
	}
}
