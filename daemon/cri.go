package daemon

import (
	"github.com/berth-dev/berth/config"
	"github.com/berth-dev/berth/cri"
	"github.com/berth-dev/berth/runtime/handler"
)

// criSection is the CRI configuration as decoded from config.toml, on
// containerd's defaults. The runtime handlers (Containerd) and the hosts
// directory (Registry.ConfigPath) are also read by the task runtime and
// the transfer plugin.
type criSection struct {
	cri.Config
	// Err is the first error of the sections (a key of the wrong type);
	// the keys before it are decoded. The CRI plugin fails with it.
	Err error
}

// CRI plugin IDs of containerd's configuration. Version 1 and 2 files keep
// everything under criPluginID; version 3 files split the settings into
// the images and runtime sections and keep only the streaming server's
// under criPluginID.
const (
	criPluginID        = "io.containerd.grpc.v1.cri"
	criImagesPluginID  = "io.containerd.cri.v1.images"
	criRuntimePluginID = "io.containerd.cri.v1.runtime"
)

// criConfig decodes the CRI sections once, so that each key berth ignores
// is warned about once.
func (d *Daemon) criConfig() *criSection {
	d.criOnce.Do(func() {
		c, warnings, err := decodeCRI(d.cfg)
		for _, w := range warnings {
			d.logger.Warn(w.String())
		}
		if err != nil {
			d.logger.Error("CRI configuration unreadable", "error", err)
		}
		d.cri = &criSection{Config: c, Err: err}
	})
	return d.cri
}

// decodeCRI decodes the CRI sections of cfg onto containerd's defaults. It
// returns the warnings of every section and the first error.
func decodeCRI(cfg *config.Config) (cri.Config, []config.Warning, error) {
	c := cri.DefaultConfig()
	sections := map[string]any{
		criImagesPluginID:  newCRIImagesSection(&c),
		criRuntimePluginID: newCRIRuntimeSection(&c),
		criPluginID:        newCRIV2Section(&c),
	}
	if cfg.Version >= 3 {
		sections[criPluginID] = newCRIServerSection(&c)
	}
	var (
		warnings []config.Warning
		first    error
	)
	for _, id := range []string{criPluginID, criImagesPluginID, criRuntimePluginID} {
		w, err := cfg.DecodePlugin(id, sections[id])
		warnings = append(warnings, w...)
		if err != nil && first == nil {
			first = err
		}
	}
	return c, warnings, first
}

// The section types below mirror containerd's layouts. Fields that are
// pointers decode straight into the cri.Config being built; the others
// are keys containerd knows and berth does not implement: they are
// type-checked and warned about when set to anything but their zero value.

// criServerKeys are the streaming server's keys, in both layouts.
type criServerKeys struct {
	StreamServerAddress  *string `toml:"stream_server_address"`
	StreamServerPort     *string `toml:"stream_server_port"`
	DisableTCPService    *bool   `toml:"disable_tcp_service"`
	StreamIdleTimeout    string  `toml:"stream_idle_timeout" berth:"unimplemented"`
	EnableTLSStreaming   bool    `toml:"enable_tls_streaming" berth:"unimplemented"`
	X509KeyPairStreaming struct {
		TLSCertFile string `toml:"tls_cert_file" berth:"unimplemented"`
		TLSKeyFile  string `toml:"tls_key_file" berth:"unimplemented"`
	} `toml:"x509_key_pair_streaming"`
}

func serverKeys(c *cri.Config) criServerKeys {
	return criServerKeys{
		StreamServerAddress: &c.StreamServerAddress,
		StreamServerPort:    &c.StreamServerPort,
		DisableTCPService:   &c.DisableTCPService,
	}
}

// criRuntimeKeys are the pod and container keys, top-level in version 2's
// section and in version 3's runtime section.
type criRuntimeKeys struct {
	EnableSELinux                      *bool    `toml:"enable_selinux"`
	RestrictOOMScoreAdj                *bool    `toml:"restrict_oom_score_adj"`
	MaxContainerLogLineSize            *int     `toml:"max_container_log_line_size"`
	EnableUnprivilegedPorts            *bool    `toml:"enable_unprivileged_ports"`
	EnableUnprivilegedICMP             *bool    `toml:"enable_unprivileged_icmp"`
	DeviceOwnershipFromSecurityContext *bool    `toml:"device_ownership_from_security_context"`
	NetNSMountsUnderStateDir           *bool    `toml:"netns_mounts_under_state_dir"`
	SELinuxCategoryRange               int      `toml:"selinux_category_range" berth:"unimplemented"`
	DisableCgroup                      bool     `toml:"disable_cgroup" berth:"unimplemented"`
	DisableApparmor                    bool     `toml:"disable_apparmor" berth:"unimplemented"`
	DisableProcMount                   bool     `toml:"disable_proc_mount" berth:"unimplemented"`
	UnsetSeccompProfile                string   `toml:"unset_seccomp_profile" berth:"unimplemented"`
	TolerateMissingHugetlbController   bool     `toml:"tolerate_missing_hugetlb_controller" berth:"unimplemented"`
	DisableHugetlbController           bool     `toml:"disable_hugetlb_controller" berth:"unimplemented"`
	IgnoreImageDefinedVolumes          bool     `toml:"ignore_image_defined_volumes" berth:"unimplemented"`
	EnableCDI                          bool     `toml:"enable_cdi" berth:"unimplemented"`
	CDISpecDirs                        []string `toml:"cdi_spec_dirs" berth:"unimplemented"`
	DrainExecSyncIOTimeout             string   `toml:"drain_exec_sync_io_timeout" berth:"unimplemented"`
	IgnoreDeprecationWarnings          []string `toml:"ignore_deprecation_warnings" berth:"unimplemented"`
}

func runtimeKeys(c *cri.Config) criRuntimeKeys {
	return criRuntimeKeys{
		EnableSELinux:                      &c.EnableSELinux,
		RestrictOOMScoreAdj:                &c.RestrictOOMScoreAdj,
		MaxContainerLogLineSize:            &c.MaxContainerLogLineSize,
		EnableUnprivilegedPorts:            &c.EnableUnprivilegedPorts,
		EnableUnprivilegedICMP:             &c.EnableUnprivilegedICMP,
		DeviceOwnershipFromSecurityContext: &c.DeviceOwnershipFromSecurityContext,
		NetNSMountsUnderStateDir:           &c.NetNSMountsUnderStateDir,
	}
}

// criImageKeys are the pull keys, top-level in version 2's section and in
// version 3's images section.
type criImageKeys struct {
	MaxConcurrentDownloads   *int   `toml:"max_concurrent_downloads"`
	ImagePullProgressTimeout string `toml:"image_pull_progress_timeout" berth:"unimplemented"`
	ImagePullWithSyncFs      bool   `toml:"image_pull_with_sync_fs" berth:"unimplemented"`
	StatsCollectPeriod       int    `toml:"stats_collect_period" berth:"unimplemented"`
	ImageDecryption          any    `toml:"image_decryption" berth:"unimplemented"`
}

func imageKeys(c *cri.Config) criImageKeys {
	return criImageKeys{MaxConcurrentDownloads: &c.MaxConcurrentDownloads}
}

// criCNI is the cni table.
type criCNI struct {
	BinDir              *string   `toml:"bin_dir"`
	BinDirs             *[]string `toml:"bin_dirs"`
	ConfDir             *string   `toml:"conf_dir"`
	MaxConfNum          *int      `toml:"max_conf_num"`
	ConfTemplate        string    `toml:"conf_template" berth:"unimplemented"`
	IPPref              string    `toml:"ip_pref" berth:"unimplemented"`
	SetupSerially       bool      `toml:"setup_serially" berth:"unimplemented"`
	UseInternalLoopback bool      `toml:"use_internal_loopback" berth:"unimplemented"`
}

func cniKeys(c *cri.Config) criCNI {
	return criCNI{BinDir: &c.CNI.BinDir, BinDirs: &c.CNI.BinDirs, ConfDir: &c.CNI.ConfDir, MaxConfNum: &c.CNI.MaxConfNum}
}

// criRegistry is the registry table; only config_path (hosts.toml) is
// implemented, as in containerd 2 where the rest is removed.
type criRegistry struct {
	ConfigPath *string `toml:"config_path"`
	Mirrors    any     `toml:"mirrors" berth:"unimplemented"`
	Configs    any     `toml:"configs" berth:"unimplemented"`
	Auths      any     `toml:"auths" berth:"unimplemented"`
	Headers    any     `toml:"headers" berth:"unimplemented"`
}

func registryKeys(c *cri.Config) criRegistry {
	return criRegistry{ConfigPath: &c.Registry.ConfigPath}
}

// criRuntimes are the runtime handler keys of the containerd table.
type criRuntimes struct {
	DefaultRuntimeName            *string                      `toml:"default_runtime_name"`
	Runtimes                      *map[string]*handler.Handler `toml:"runtimes"`
	IgnoreRdtNotEnabledErrors     bool                         `toml:"ignore_rdt_not_enabled_errors" berth:"unimplemented"`
	IgnoreBlockIONotEnabledErrors bool                         `toml:"ignore_blockio_not_enabled_errors" berth:"unimplemented"`
}

func runtimesKeys(c *cri.Config) criRuntimes {
	return criRuntimes{DefaultRuntimeName: &c.Containerd.DefaultRuntimeName, Runtimes: &c.Containerd.Runtimes}
}

// criContainerdV2 is version 2's containerd table: runtimes and the
// snapshotter keys that version 3 moved to the images section.
type criContainerdV2 struct {
	criRuntimes
	Snapshotter                *string              `toml:"snapshotter"`
	DisableSnapshotAnnotations *bool                `toml:"disable_snapshot_annotations"`
	DiscardUnpackedLayers      bool                 `toml:"discard_unpacked_layers" berth:"unimplemented"`
	NoPivot                    bool                 `toml:"no_pivot" berth:"unimplemented"`
	DefaultRuntime             criDeprecatedRuntime `toml:"default_runtime"`
	UntrustedWorkloadRuntime   criDeprecatedRuntime `toml:"untrusted_workload_runtime"`
}

// criDeprecatedRuntime is a runtime table of containerd 1.x's deprecated
// default_runtime and untrusted_workload_runtime, which `containerd config
// default` writes with zero values: only what is set warns.
type criDeprecatedRuntime struct {
	RuntimeType                  string   `toml:"runtime_type" berth:"unimplemented"`
	RuntimePath                  string   `toml:"runtime_path" berth:"unimplemented"`
	RuntimeEngine                string   `toml:"runtime_engine" berth:"unimplemented"`
	RuntimeRoot                  string   `toml:"runtime_root" berth:"unimplemented"`
	BaseRuntimeSpec              string   `toml:"base_runtime_spec" berth:"unimplemented"`
	CNIConfDir                   string   `toml:"cni_conf_dir" berth:"unimplemented"`
	CNIMaxConfNum                int      `toml:"cni_max_conf_num" berth:"unimplemented"`
	ContainerAnnotations         []string `toml:"container_annotations" berth:"unimplemented"`
	PodAnnotations               []string `toml:"pod_annotations" berth:"unimplemented"`
	PrivilegedWithoutHostDevices bool     `toml:"privileged_without_host_devices" berth:"unimplemented"`
	Options                      any      `toml:"options" berth:"unimplemented"`
}

// criV2Section is [plugins."io.containerd.grpc.v1.cri"] of versions 1, 2.
type criV2Section struct {
	criServerKeys
	criRuntimeKeys
	criImageKeys
	SandboxImage  *string         `toml:"sandbox_image"`
	Containerd    criContainerdV2 `toml:"containerd"`
	CNI           criCNI          `toml:"cni"`
	Registry      criRegistry     `toml:"registry"`
	SystemdCgroup bool            `toml:"systemd_cgroup" berth:"unimplemented"`
}

func newCRIV2Section(c *cri.Config) *criV2Section {
	return &criV2Section{
		criServerKeys:  serverKeys(c),
		criRuntimeKeys: runtimeKeys(c),
		criImageKeys:   imageKeys(c),
		SandboxImage:   &c.SandboxImage,
		Containerd: criContainerdV2{
			criRuntimes:                runtimesKeys(c),
			Snapshotter:                &c.Snapshotter,
			DisableSnapshotAnnotations: &c.DisableSnapshotAnnotations,
		},
		CNI:      cniKeys(c),
		Registry: registryKeys(c),
	}
}

// criServerSection is version 3's [plugins."io.containerd.grpc.v1.cri"].
type criServerSection struct{ criServerKeys }

func newCRIServerSection(c *cri.Config) *criServerSection {
	return &criServerSection{serverKeys(c)}
}

// criImagesSection is version 3's [plugins."io.containerd.cri.v1.images"].
type criImagesSection struct {
	criImageKeys
	Snapshotter                *string     `toml:"snapshotter"`
	DisableSnapshotAnnotations *bool       `toml:"disable_snapshot_annotations"`
	DiscardUnpackedLayers      bool        `toml:"discard_unpacked_layers" berth:"unimplemented"`
	UseLocalImagePull          bool        `toml:"use_local_image_pull" berth:"unimplemented"`
	RuntimePlatforms           any         `toml:"runtime_platforms" berth:"unimplemented"`
	Registry                   criRegistry `toml:"registry"`
	PinnedImages               struct {
		Sandbox *string `toml:"sandbox"`
	} `toml:"pinned_images"`
}

func newCRIImagesSection(c *cri.Config) *criImagesSection {
	s := &criImagesSection{
		criImageKeys:               imageKeys(c),
		Snapshotter:                &c.Snapshotter,
		DisableSnapshotAnnotations: &c.DisableSnapshotAnnotations,
		Registry:                   registryKeys(c),
	}
	s.PinnedImages.Sandbox = &c.SandboxImage
	return s
}

// criRuntimeSection is version 3's [plugins."io.containerd.cri.v1.runtime"].
type criRuntimeSection struct {
	criRuntimeKeys
	Containerd criRuntimes `toml:"containerd"`
	CNI        criCNI      `toml:"cni"`
}

func newCRIRuntimeSection(c *cri.Config) *criRuntimeSection {
	return &criRuntimeSection{criRuntimeKeys: runtimeKeys(c), Containerd: runtimesKeys(c), CNI: cniKeys(c)}
}
