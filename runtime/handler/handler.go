// Package handler is berthd's table of runtime handlers: the names a
// container may give as its runtime (`berth run --runtime runsc`, a pod's
// RuntimeClass handler) and what each stands for, read from containerd's
// CRI configuration:
//
//	[plugins."io.containerd.grpc.v1.cri".containerd]          # version 2
//	  default_runtime_name = "runc"
//	[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc]
//	  runtime_type = "io.containerd.runsc.v1"
//	  runtime_path = ""                                       # optional shim binary
//	  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc.options]
//	    TypeUrl = "io.containerd.runsc.v1.options"
//	    ConfigPath = "/etc/containerd/runsc.toml"
//
// (version 3 keeps the same tables under "io.containerd.cri.v1.runtime").
//
// A handler's options become the runtime options the shim receives, encoded
// as containerd's CRI encodes them: for io.containerd.runc.v2 a
// containerd.runc.v1.Options message built from the TOML keys (BinaryName,
// Root, SystemdCgroup, ...); for any other runtime type a
// runtimeoptions.v1.Options {TypeUrl, ConfigPath, ConfigBody}, which is what
// gVisor's shim reads.
//
// Three handlers exist without configuration so that `--runtime` works on a
// node with no CRI section: runc (the default), crun (runc's shim with
// BinaryName crun) and runsc (io.containerd.runsc.v1). A configured handler
// of the same name replaces the built-in one.
package handler

import (
	"fmt"
	"os"
	"sort"
	"strings"

	runcopts "github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Runtime types berth knows by name.
const (
	RuncV2  = "io.containerd.runc.v2"
	RunscV1 = "io.containerd.runsc.v1"
)

// Type URLs of the two option encodings.
const (
	runcOptionsURL    = "containerd.runc.v1.Options"
	runtimeOptionsURL = "runtimeoptions.v1.Options"
)

// Handler is one [...containerd.runtimes.NAME] table.
type Handler struct {
	Name        string
	RuntimeType string         `toml:"runtime_type"`
	RuntimePath string         `toml:"runtime_path"`
	Options     map[string]any `toml:"options"`

	// Keys containerd's CRI reads per runtime that berth does not act on
	// yet: decoded and type-checked, one warning each when set.
	PodAnnotations                 []string `toml:"pod_annotations" berth:"unimplemented"`
	ContainerAnnotations           []string `toml:"container_annotations" berth:"unimplemented"`
	PrivilegedWithoutHostDevices   bool     `toml:"privileged_without_host_devices" berth:"unimplemented"`
	PrivilegedWithoutHostDevicesAD bool     `toml:"privileged_without_host_devices_all_devices_allowed" berth:"unimplemented"`
	BaseRuntimeSpec                string   `toml:"base_runtime_spec" berth:"unimplemented"`
	CNIConfDir                     string   `toml:"cni_conf_dir" berth:"unimplemented"`
	CNIMaxConfNum                  int      `toml:"cni_max_conf_num" berth:"unimplemented"`
	Snapshotter                    string   `toml:"snapshotter" berth:"unimplemented"`
	SandboxMode                    string   `toml:"sandbox_mode" berth:"unimplemented"`
	Sandboxer                      string   `toml:"sandboxer" berth:"unimplemented"`
	IOType                         string   `toml:"io_type" berth:"unimplemented"`
	TreatRoMountsAsRro             bool     `toml:"treat_ro_mounts_as_rro" berth:"unimplemented"`
	RuntimeEngine                  string   `toml:"runtime_engine" berth:"unimplemented"`
	RuntimeRoot                    string   `toml:"runtime_root" berth:"unimplemented"`

	// configBody is the runsc.toml of a built-in handler.
	configBody []byte
}

// Config is the part of the CRI section the table is read from.
type Config struct {
	DefaultRuntimeName string              `toml:"default_runtime_name"`
	Runtimes           map[string]*Handler `toml:"runtimes"`
}

// Table resolves handler names. The zero Table has only the built-ins.
type Table struct {
	def      string
	handlers map[string]*Handler
}

// New builds the table from the configuration, checking each handler.
func New(cfg Config) (*Table, error) {
	t := &Table{def: cfg.DefaultRuntimeName, handlers: builtins()}
	if t.def == "" {
		t.def = "runc"
	}
	for name, h := range cfg.Runtimes {
		if h == nil {
			h = &Handler{}
		}
		h.Name = name
		if h.RuntimeType == "" {
			h.RuntimeType = RuncV2 // containerd's default runtime_type
		}
		if _, err := ShimName(h.RuntimeType); err != nil {
			return nil, fmt.Errorf("runtime handler %q: %w", name, err)
		}
		if _, err := h.OptionsAny(); err != nil {
			return nil, err
		}
		t.handlers[name] = h
	}
	if _, ok := t.handlers[t.def]; !ok {
		return nil, fmt.Errorf("default_runtime_name %q names no runtime handler (configured: %s): %w",
			t.def, strings.Join(t.Names(), ", "), errdefs.ErrInvalidArgument)
	}
	return t, nil
}

// builtinRunscConfig is the runsc.toml of the built-in runsc handler:
// the ptrace platform (no KVM needed) and the host network stack inside
// the container's network namespace. gVisor's own netstack is refused by
// Debian's runsc (2022-12) on kernels that show net.core sysctls in every
// namespace ("cannot run with network enabled in root network namespace",
// gVisor issue 10704). A configured runsc handler with its own ConfigPath
// decides for itself.
const builtinRunscConfig = `[runsc_config]
  platform = "ptrace"
  network = "host"
`

func builtins() map[string]*Handler {
	return map[string]*Handler{
		"runc": {Name: "runc", RuntimeType: RuncV2},
		"crun": {Name: "crun", RuntimeType: RuncV2, Options: map[string]any{"BinaryName": "crun"}},
		"runsc": {Name: "runsc", RuntimeType: RunscV1, Options: map[string]any{"TypeUrl": RunscV1 + ".options"},
			configBody: []byte(builtinRunscConfig)},
	}
}

// Names lists the handlers, sorted.
func (t *Table) Names() []string {
	if t == nil || t.handlers == nil {
		t = &Table{handlers: builtins()}
	}
	names := make([]string, 0, len(t.handlers))
	for n := range t.handlers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Default returns the default handler.
func (t *Table) Default() *Handler {
	h, _ := t.Get("")
	return h
}

// Get returns the handler called name ("" is the default one), or NotFound
// with the list of handlers there are.
func (t *Table) Get(name string) (*Handler, error) {
	if t == nil || t.handlers == nil {
		t = &Table{def: "runc", handlers: builtins()}
	}
	if name == "" {
		name = t.def
	}
	if h, ok := t.handlers[name]; ok {
		return h, nil
	}
	return nil, fmt.Errorf("runtime handler %q is not configured (configured handlers: %s); add [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.%s] to berthd's config: %w",
		name, strings.Join(t.Names(), ", "), name, errdefs.ErrNotFound)
}

// Lookup resolves what a container names as its runtime: a runtime type
// (io.containerd.runc.v2) stands for itself, with the default handler's
// runtime_path when the default handler is of that type; anything else is
// a handler name.
func (t *Table) Lookup(runtime string) (*Handler, error) {
	if runtime == "" || !strings.HasPrefix(runtime, "io.containerd.") {
		return t.Get(runtime)
	}
	if _, err := ShimName(runtime); err != nil {
		return nil, err
	}
	h := &Handler{Name: runtime, RuntimeType: runtime}
	if d := t.Default(); d != nil && d.RuntimeType == runtime {
		h.RuntimePath = d.RuntimePath
	}
	return h, nil
}

// ShimName returns the shim binary containerd names for a runtime type:
// io.containerd.<name>.<version> → containerd-shim-<name>-<version>.
func ShimName(runtimeType string) (string, error) {
	parts := strings.Split(runtimeType, ".")
	if len(parts) != 4 || parts[0] != "io" || parts[1] != "containerd" || parts[2] == "" || parts[3] == "" {
		return "", fmt.Errorf("runtime type %q: not of the form io.containerd.<name>.<version>: %w", runtimeType, errdefs.ErrInvalidArgument)
	}
	return "containerd-shim-" + parts[2] + "-" + parts[3], nil
}

// OptionsAny encodes the handler's options for the shim; nil when there are
// none.
func (h *Handler) OptionsAny() (*anypb.Any, error) {
	var (
		msg proto.Message
		url string
		err error
	)
	if h.RuntimeType == RuncV2 {
		if len(h.Options) == 0 {
			return nil, nil
		}
		msg, err = runcOptions(h.Options)
		url = runcOptionsURL
	} else {
		if len(h.Options) == 0 && h.RuntimeType != RunscV1 {
			return nil, nil
		}
		msg, err = runtimeOptions(h)
		url = runtimeOptionsURL
	}
	if err != nil {
		return nil, fmt.Errorf("runtime handler %q: options: %w", h.Name, err)
	}
	value, err := proto.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("runtime handler %q: encode options: %w", h.Name, err)
	}
	return &anypb.Any{TypeUrl: url, Value: value}, nil
}

// runcOptions maps the TOML keys containerd documents for runc's options.
func runcOptions(m map[string]any) (*runcopts.Options, error) {
	o := &runcopts.Options{}
	for k, v := range m {
		var err error
		switch k {
		case "NoPivotRoot":
			o.NoPivotRoot, err = asBool(k, v)
		case "NoNewKeyring":
			o.NoNewKeyring, err = asBool(k, v)
		case "SystemdCgroup":
			o.SystemdCgroup, err = asBool(k, v)
		case "ShimCgroup":
			o.ShimCgroup, err = asString(k, v)
		case "BinaryName":
			o.BinaryName, err = asString(k, v)
		case "Root":
			o.Root, err = asString(k, v)
		case "CriuImagePath":
			o.CriuImagePath, err = asString(k, v)
		case "CriuWorkPath":
			o.CriuWorkPath, err = asString(k, v)
		case "CriuPath":
			// Written by containerd 1.6's `config default`; the field is
			// gone from the options message (reserved 8).
			_, err = asString(k, v)
		case "IoUid":
			o.IoUid, err = asUint32(k, v)
		case "IoGid":
			o.IoGid, err = asUint32(k, v)
		default:
			err = fmt.Errorf("unknown runc option %q (known: BinaryName, Root, SystemdCgroup, NoPivotRoot, NoNewKeyring, ShimCgroup, IoUid, IoGid, CriuImagePath, CriuWorkPath): %w", k, errdefs.ErrInvalidArgument)
		}
		if err != nil {
			return nil, err
		}
	}
	return o, nil
}

// runtimeOptions builds containerd's generic options message. ConfigBody is
// read from ConfigPath when the file exists, as containerd's CRI does, so
// a shim that only reads the body still sees it.
func runtimeOptions(h *Handler) (*runtimeoptions.Options, error) {
	o := &runtimeoptions.Options{}
	for k, v := range h.Options {
		var err error
		switch k {
		case "TypeUrl":
			o.TypeUrl, err = asString(k, v)
		case "ConfigPath":
			o.ConfigPath, err = asString(k, v)
		default:
			err = fmt.Errorf("unknown option %q for runtime type %s (known: TypeUrl, ConfigPath): %w", k, h.RuntimeType, errdefs.ErrInvalidArgument)
		}
		if err != nil {
			return nil, err
		}
	}
	if o.TypeUrl == "" && h.RuntimeType == RunscV1 {
		o.TypeUrl = RunscV1 + ".options"
	}
	if o.ConfigPath != "" {
		if body, err := os.ReadFile(o.ConfigPath); err == nil {
			o.ConfigBody = body
		}
	} else if h.configBody != nil {
		o.ConfigBody = h.configBody
	}
	return o, nil
}

func asBool(k string, v any) (bool, error) {
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("option %s: want a boolean, got %v: %w", k, v, errdefs.ErrInvalidArgument)
	}
	return b, nil
}

func asString(k string, v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("option %s: want a string, got %v: %w", k, v, errdefs.ErrInvalidArgument)
	}
	return s, nil
}

func asUint32(k string, v any) (uint32, error) {
	n, ok := v.(int64)
	if !ok || n < 0 || n > 1<<32-1 {
		return 0, fmt.Errorf("option %s: want an unsigned integer, got %v: %w", k, v, errdefs.ErrInvalidArgument)
	}
	return uint32(n), nil
}
