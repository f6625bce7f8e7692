// Package runtimeopts decodes the runtime options of a task (the `options`
// Any of Create, and of the shim's start) into how the shim runs the OCI
// runtime binary: which binary, its state root, its global flags, the owner
// of the stdio pipes and the shim's cgroup.
//
// Three encodings are understood, by type URL:
//
//   - containerd.runc.v1.Options, protobuf: io.containerd.runc.v2 handlers
//     (runc, and crun through BinaryName);
//   - runtimeoptions.v1.Options {type_url = 1, config_path = 2,
//     config_body = 3}, protobuf: what containerd's CRI, and berthd, send for
//     any other runtime type. With type_url io.containerd.runsc.v1.options it
//     selects gVisor; otherwise it is not the shim's business and ignored;
//   - io.containerd.runsc.v1.options itself: the same protobuf layout, or a
//     JSON object with the keys of the handler's TOML options table
//     (TypeUrl, ConfigPath, BinaryName, Root, ShimCgroup, IoUid, IoGid,
//     LogLevel, LogPath, RunscConfig; snake_case and camelCase spellings
//     work too).
//
// gVisor's options live in a TOML file (runsc.toml, the format of gVisor's
// containerd-shim-runsc-v1): binary_name, root, shim_cgroup, io_uid, io_gid,
// log_level and log_path at the top, and a [runsc_config] table whose
// entries become global runsc flags, `key = "value"` → --key=value. The
// file is config_body when the options carry it, else read from
// config_path. Fields given in JSON override the file's. log_level and
// log_path configure gVisor's own shim and are accepted and unused: berth's
// shim logs to the daemon.
//
// Any other type URL, or no options, means runc with its defaults.
package runtimeopts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	runcopts "github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Type URLs, matched by suffix so that the registry prefix does not matter.
const (
	RuncOptionsType    = "containerd.runc.v1.Options"
	RuntimeOptionsType = "runtimeoptions.v1.Options"
	RunscOptionsType   = "io.containerd.runsc.v1.options"
)

// Defaults of a gVisor task.
const (
	DefaultRunscBinary = "runsc"
	DefaultRunscRoot   = "/run/berth/runsc"
)

// Config is how the shim runs the OCI runtime for a task. Its JSON form is
// kept in the task's bundle; the field names are those of
// containerd.runc.v1.Options' JSON, so that what older shims wrote there
// still reads.
type Config struct {
	// BinaryName is the runtime binary; empty means runc.
	BinaryName string `json:"binary_name,omitempty"`
	// Root is the parent of the runtime's per-namespace state directories;
	// empty means the shim's default.
	Root          string `json:"root,omitempty"`
	SystemdCgroup bool   `json:"systemd_cgroup,omitempty"`
	NoPivotRoot   bool   `json:"no_pivot_root,omitempty"`
	NoNewKeyring  bool   `json:"no_new_keyring,omitempty"`
	// ShimCgroup is the cgroup the shim server joins at start.
	ShimCgroup string `json:"shim_cgroup,omitempty"`
	// IoUID and IoGID own the processes' stdio pipes.
	IoUID uint32 `json:"io_uid,omitempty"`
	IoGID uint32 `json:"io_gid,omitempty"`
	// GlobalFlags go before the subcommand of every runtime invocation
	// (runsc's runsc_config), sorted by name.
	GlobalFlags []string `json:"global_flags,omitempty"`
}

// Decode reads the runtime options a; nil or an unknown type yields the
// zero Config. Malformed options are errdefs.ErrInvalidArgument; a config
// file that cannot be read is errdefs.ErrFailedPrecondition.
func Decode(a *anypb.Any) (*Config, error) {
	url := a.GetTypeUrl()
	switch {
	case a == nil:
		return &Config{}, nil
	case strings.HasSuffix(url, RuncOptionsType):
		return decodeRunc(a.GetValue())
	case strings.HasSuffix(url, RuntimeOptionsType):
		return decodeRuntimeOptions(a.GetValue())
	case strings.HasSuffix(url, RunscOptionsType):
		return decodeRunsc(a.GetValue())
	default:
		return &Config{}, nil
	}
}

func decodeRunc(value []byte) (*Config, error) {
	var o runcopts.Options
	if err := proto.Unmarshal(value, &o); err != nil {
		return nil, fmt.Errorf("runtime options %s: %v: %w", RuncOptionsType, err, errdefs.ErrInvalidArgument)
	}
	return &Config{
		BinaryName:    o.BinaryName,
		Root:          o.Root,
		SystemdCgroup: o.SystemdCgroup,
		NoPivotRoot:   o.NoPivotRoot,
		NoNewKeyring:  o.NoNewKeyring,
		ShimCgroup:    o.ShimCgroup,
		IoUID:         o.IoUid,
		IoGID:         o.IoGid,
	}, nil
}

// decodeRuntimeOptions reads containerd's generic options: gVisor's when
// they say so, nothing otherwise.
func decodeRuntimeOptions(value []byte) (*Config, error) {
	var o runtimeoptions.Options
	if err := proto.Unmarshal(value, &o); err != nil {
		return nil, fmt.Errorf("runtime options %s: %v: %w", RuntimeOptionsType, err, errdefs.ErrInvalidArgument)
	}
	if !strings.HasSuffix(o.TypeUrl, RunscOptionsType) {
		return &Config{}, nil
	}
	file, err := readFile(o.ConfigPath, o.ConfigBody)
	if err != nil {
		return nil, err
	}
	return file.config()
}

// decodeRunsc reads io.containerd.runsc.v1.options: a JSON object, or the
// protobuf layout of runtimeoptions.v1.Options.
func decodeRunsc(value []byte) (*Config, error) {
	if trimmed := bytes.TrimSpace(value); len(trimmed) > 0 && trimmed[0] == '{' && json.Valid(trimmed) {
		return decodeRunscJSON(trimmed)
	}
	var o runtimeoptions.Options
	if err := proto.Unmarshal(value, &o); err != nil {
		return nil, fmt.Errorf("runtime options %s: neither JSON nor protobuf: %v: %w", RunscOptionsType, err, errdefs.ErrInvalidArgument)
	}
	file, err := readFile(o.ConfigPath, o.ConfigBody)
	if err != nil {
		return nil, err
	}
	return file.config()
}

// runscFile is gVisor's options file; the same fields may come in JSON.
type runscFile struct {
	ShimCgroup  string         `toml:"shim_cgroup"`
	IoUID       uint32         `toml:"io_uid"`
	IoGID       uint32         `toml:"io_gid"`
	BinaryName  string         `toml:"binary_name"`
	Root        string         `toml:"root"`
	LogLevel    string         `toml:"log_level"`
	LogPath     string         `toml:"log_path"`
	RunscConfig map[string]any `toml:"runsc_config"`
}

// readFile parses body, or else the file at path; neither gives defaults.
func readFile(path string, body []byte) (*runscFile, error) {
	f := &runscFile{}
	if len(body) == 0 && path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("runsc options file: %v: %w", err, errdefs.ErrFailedPrecondition)
		}
		body = data
	}
	if len(body) == 0 {
		return f, nil
	}
	if err := toml.Unmarshal(body, f); err != nil {
		where := path
		if where == "" {
			where = "config_body"
		}
		return nil, fmt.Errorf("runsc options file %s: %v: %w", where, err, errdefs.ErrInvalidArgument)
	}
	return f, nil
}

// config turns gVisor's options into the shim's, with gVisor's defaults.
func (f *runscFile) config() (*Config, error) {
	global, err := flags(f.RunscConfig)
	if err != nil {
		return nil, err
	}
	c := &Config{
		BinaryName:  f.BinaryName,
		Root:        f.Root,
		ShimCgroup:  f.ShimCgroup,
		IoUID:       f.IoUID,
		IoGID:       f.IoGID,
		GlobalFlags: global,
	}
	if c.BinaryName == "" {
		c.BinaryName = DefaultRunscBinary
	}
	if c.Root == "" {
		c.Root = DefaultRunscRoot
	}
	return c, nil
}

// flags turns [runsc_config] into --key=value flags, sorted by key.
// gVisor's file has strings only; booleans and numbers are taken as
// written, since TOML makes `debug = true` as natural as `debug = "true"`.
func flags(m map[string]any) ([]string, error) {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch v := m[k].(type) {
		case string, bool, int64, float64:
			if k == "" || strings.HasPrefix(k, "-") || strings.ContainsAny(k, "= \t\n") {
				return nil, fmt.Errorf("runsc_config: flag name %q: %w", k, errdefs.ErrInvalidArgument)
			}
			out = append(out, fmt.Sprintf("--%s=%v", k, v))
		default:
			return nil, fmt.Errorf("runsc_config: %s: want a string, boolean or number, got %T: %w", k, v, errdefs.ErrInvalidArgument)
		}
	}
	return out, nil
}

// decodeRunscJSON reads the JSON form: the keys of the handler's TOML
// options table, spelled as in TOML (ConfigPath), in snake_case or in
// camelCase. The file it names is read first; the other keys override it.
func decodeRunscJSON(data []byte) (*Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("runtime options %s: %v: %w", RunscOptionsType, err, errdefs.ErrInvalidArgument)
	}
	fields := map[string]json.RawMessage{}
	for k, v := range raw {
		fields[strings.ToLower(strings.ReplaceAll(k, "_", ""))] = v
	}
	var path string
	var body []byte
	if err := jsonField(fields, "configpath", &path); err != nil {
		return nil, err
	}
	if err := jsonField(fields, "configbody", &body); err != nil {
		return nil, err
	}
	file, err := readFile(path, body)
	if err != nil {
		return nil, err
	}
	var typeURL string
	extra := map[string]any{}
	for _, f := range []struct {
		key string
		dst any
	}{
		{"typeurl", &typeURL},
		{"shimcgroup", &file.ShimCgroup},
		{"iouid", &file.IoUID},
		{"iogid", &file.IoGID},
		{"binaryname", &file.BinaryName},
		{"root", &file.Root},
		{"loglevel", &file.LogLevel},
		{"logpath", &file.LogPath},
		{"runscconfig", &extra},
	} {
		if err := jsonField(fields, f.key, f.dst); err != nil {
			return nil, err
		}
	}
	if len(fields) > 0 {
		return nil, fmt.Errorf("runtime options %s: unknown keys %s (known: TypeUrl, ConfigPath, ConfigBody, BinaryName, Root, ShimCgroup, IoUid, IoGid, LogLevel, LogPath, RunscConfig): %w",
			RunscOptionsType, strings.Join(slices.Sorted(maps.Keys(fields)), ", "), errdefs.ErrInvalidArgument)
	}
	if typeURL != "" && !strings.HasSuffix(typeURL, RunscOptionsType) {
		return nil, fmt.Errorf("runtime options %s: TypeUrl %q: %w", RunscOptionsType, typeURL, errdefs.ErrInvalidArgument)
	}
	if file.RunscConfig == nil {
		file.RunscConfig = map[string]any{}
	}
	maps.Copy(file.RunscConfig, extra)
	return file.config()
}

// jsonField decodes fields[key] into dst, if present, and removes it.
func jsonField(fields map[string]json.RawMessage, key string, dst any) error {
	v, ok := fields[key]
	if !ok {
		return nil
	}
	delete(fields, key)
	if err := json.Unmarshal(v, dst); err != nil {
		return fmt.Errorf("runtime options %s: %s: %v: %w", RunscOptionsType, key, err, errdefs.ErrInvalidArgument)
	}
	return nil
}
