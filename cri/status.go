package cri

import (
	"context"
	"encoding/json"
	goruntime "runtime"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// reasonNetworkNotReady is containerd's reason for NetworkReady false.
const reasonNetworkNotReady = "NetworkPluginNotReady"

// status answers Status: the runtime is ready once served; the network
// is ready when the CNI conf dir has a configuration that loads.
func (s *Service) status(ctx context.Context, verbose bool) *runtime.StatusResponse {
	networks, cniErr := loadCNINetworks(s.cfg.CNI)
	network := &runtime.RuntimeCondition{Type: runtime.NetworkReady, Status: cniErr == nil}
	if cniErr != nil {
		network.Reason = reasonNetworkNotReady
		network.Message = "Network plugin returns error: " + cniErr.Error()
	}
	resp := &runtime.StatusResponse{
		Status: &runtime.RuntimeStatus{Conditions: []*runtime.RuntimeCondition{
			{Type: runtime.RuntimeReady, Status: true},
			network,
		}},
		RuntimeHandlers: s.runtimeHandlers(ctx),
		// Strict and Merge are applied at CreateContainer, and the
		// container's status reports the groups it got.
		Features: &runtime.RuntimeFeatures{SupplementalGroupsPolicy: true},
	}
	if verbose {
		resp.Info = s.info(networks, cniErr)
	}
	return resp
}

// runtimeHandlers lists the handlers a pod's RuntimeClass may name: the
// default one (""), then each by name, with the features its runtime
// has (features.go).
func (s *Service) runtimeHandlers(ctx context.Context) []*runtime.RuntimeHandler {
	out := []*runtime.RuntimeHandler{{Name: "", Features: s.features.handlerFeatures(ctx, s.handlers.Default())}}
	for _, name := range s.handlers.Names() {
		h, _ := s.handlers.Get(name)
		out = append(out, &runtime.RuntimeHandler{Name: name, Features: s.features.handlerFeatures(ctx, h)})
	}
	return out
}

// info is the verbose part of Status, with containerd's keys and JSON
// names, so that what tools read from `crictl info` (config.sandboxImage,
// config.containerd.runtimes, lastCNILoadStatus) is where they look.
func (s *Service) info(networks []string, cniErr error) map[string]string {
	cniStatus := "OK"
	if cniErr != nil {
		cniStatus = cniErr.Error()
	}
	return map[string]string{
		"config": mustJSON(s.configInfo()),
		"cniconfig": mustJSON(map[string]any{
			"PluginDirs": s.cfg.CNI.PluginDirs(), "PluginConfDir": s.cfg.CNI.ConfDir,
			"PluginMaxConfNum": s.cfg.CNI.MaxConfNum, "Networks": networks,
		}),
		"golang":                    goruntime.Version(),
		"lastCNILoadStatus":         cniStatus,
		"lastCNILoadStatus.default": cniStatus,
	}
}

// runtimeInfo is one runtime handler in Status's config.
type runtimeInfo struct {
	RuntimeType string         `json:"runtimeType"`
	RuntimePath string         `json:"runtimePath,omitempty"`
	Options     map[string]any `json:"options,omitempty"`
}

func (s *Service) configInfo() map[string]any {
	c := s.cfg
	runtimes := map[string]runtimeInfo{}
	for _, name := range s.handlers.Names() {
		h, err := s.handlers.Get(name)
		if err != nil {
			continue
		}
		runtimes[name] = runtimeInfo{RuntimeType: h.RuntimeType, RuntimePath: h.RuntimePath, Options: h.Options}
	}
	return map[string]any{
		"containerd": map[string]any{
			"snapshotter":                c.Snapshotter,
			"defaultRuntimeName":         s.handlers.Default().Name,
			"runtimes":                   runtimes,
			"disableSnapshotAnnotations": c.DisableSnapshotAnnotations,
		},
		"cni": map[string]any{
			"binDir": c.CNI.BinDir, "binDirs": c.CNI.PluginDirs(), "confDir": c.CNI.ConfDir, "maxConfNum": c.CNI.MaxConfNum,
		},
		"registry":                           map[string]any{"configPath": c.Registry.ConfigPath},
		"sandboxImage":                       c.SandboxImage,
		"maxConcurrentDownloads":             c.MaxConcurrentDownloads,
		"streamServerAddress":                c.StreamServerAddress,
		"streamServerPort":                   c.StreamServerPort,
		"disableTCPService":                  c.DisableTCPService,
		"enableSelinux":                      c.EnableSELinux,
		"restrictOOMScoreAdj":                c.RestrictOOMScoreAdj,
		"maxContainerLogSize":                c.MaxContainerLogLineSize,
		"enableUnprivilegedPorts":            c.EnableUnprivilegedPorts,
		"enableUnprivilegedICMP":             c.EnableUnprivilegedICMP,
		"deviceOwnershipFromSecurityContext": c.DeviceOwnershipFromSecurityContext,
		"netnsMountsUnderStateDir":           c.NetNSMountsUnderStateDir,
		"rootDir":                            s.deps.Root,
		"stateDir":                           s.deps.State,
	}
}

// mustJSON encodes values that always encode: maps of strings, numbers,
// booleans and the TOML values of handler options.
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	return string(b)
}
