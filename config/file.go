package config

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
)

// maxFileSize bounds what Load reads; configuration files are a few KiB.
const maxFileSize = 4 << 20

// fileConfig is the schema of one containerd config.toml. It names every
// top-level key containerd 1.6 to 2.x knows, so that those berth ignores are
// still type-checked like containerd does and warn only when set.
type fileConfig struct {
	Version          int                        `toml:"version"`
	Root             string                     `toml:"root"`
	State            string                     `toml:"state"`
	Temp             string                     `toml:"temp" berth:"unimplemented"`
	PluginDir        string                     `toml:"plugin_dir" berth:"unimplemented"`
	OOMScore         int                        `toml:"oom_score" berth:"unimplemented"`
	Imports          []string                   `toml:"imports"`
	DisabledPlugins  []string                   `toml:"disabled_plugins"`
	RequiredPlugins  []string                   `toml:"required_plugins"`
	GRPC             grpcFile                   `toml:"grpc"`
	TTRPC            TTRPC                      `toml:"ttrpc"`
	Debug            debugFile                  `toml:"debug"`
	Metrics          metricsFile                `toml:"metrics"`
	Cgroup           cgroupFile                 `toml:"cgroup"`
	ProxyPlugins     map[string]proxyFile       `toml:"proxy_plugins"`
	Timeouts         map[string]string          `toml:"timeouts" berth:"unimplemented"`
	StreamProcessors map[string]streamProcessor `toml:"stream_processors" berth:"unimplemented"`
	Plugins          map[string]*item           `toml:"plugins"`
}

type grpcFile struct {
	GRPC
	TCPAddress    string `toml:"tcp_address" berth:"unimplemented"`
	TCPTLSCA      string `toml:"tcp_tls_ca" berth:"unimplemented"`
	TCPTLSCert    string `toml:"tcp_tls_cert" berth:"unimplemented"`
	TCPTLSKey     string `toml:"tcp_tls_key" berth:"unimplemented"`
	TCPTLSCommonN string `toml:"tcp_tls_common_name" berth:"unimplemented"`
}

type debugFile struct {
	Debug
	UID int `toml:"uid" berth:"unimplemented"`
	GID int `toml:"gid" berth:"unimplemented"`
}

type metricsFile struct {
	Address       string `toml:"address" berth:"unimplemented"`
	GRPCHistogram bool   `toml:"grpc_histogram" berth:"unimplemented"`
}

type cgroupFile struct {
	Path string `toml:"path" berth:"unimplemented"`
}

type proxyFile struct {
	ProxyPlugin
	Exports      map[string]string `toml:"exports" berth:"unimplemented"`
	Capabilities []string          `toml:"capabilities" berth:"unimplemented"`
}

type streamProcessor struct {
	Accepts []string `toml:"accepts"`
	Returns string   `toml:"returns"`
	Path    string   `toml:"path"`
	Args    []string `toml:"args"`
	Env     []string `toml:"env"`
}

// file is one parsed, checked configuration file.
type file struct {
	path     string
	root     *item
	cfg      fileConfig
	plugins  map[string]*section // by plugin ID, version 1 names mapped
	warnings []Warning
}

func readConfigFile(path string) (*file, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	root, err := parse(path, data)
	if err != nil {
		return nil, err
	}
	f := &file{path: path, root: root}
	var d decoder
	if err := d.decode(root, "", reflect.ValueOf(&f.cfg).Elem()); err != nil {
		return nil, err
	}
	f.warnings = d.warnings
	if f.cfg.Version == 0 {
		f.cfg.Version = 1 // containerd reads a file without version as version 1
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	if err := f.collectPlugins(); err != nil {
		return nil, err
	}
	return f, nil
}

// readFile reads a regular file of bounded size; imports could otherwise
// name a FIFO or a device and hang the daemon.
func readFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file: %w", path, errdefs.ErrInvalidArgument)
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes: %w", path, maxFileSize, errdefs.ErrInvalidArgument)
	}
	return data, nil
}

var logLevels = []string{"trace", "debug", "info", "warn", "warning", "error", "fatal", "panic"}

func (f *file) validate() error {
	c := &f.cfg
	if c.Version < 0 || c.Version > CurrentVersion {
		return f.invalid("version", fmt.Sprintf("unsupported version %d, berth reads versions 1, 2 and 3", c.Version))
	}
	for _, k := range []struct{ key, val string }{{"root", c.Root}, {"state", c.State}} {
		if k.val != "" && !filepath.IsAbs(k.val) {
			return f.invalid(k.key, fmt.Sprintf("must be an absolute path, got %q", k.val))
		}
	}
	c.Debug.Level = strings.ToLower(c.Debug.Level) // containerd's logger ignores case
	if c.Debug.Level != "" && !slices.Contains(logLevels, c.Debug.Level) {
		return f.invalid("debug.level", fmt.Sprintf("unknown log level %q, want one of %s", c.Debug.Level, strings.Join(logLevels, ", ")))
	}
	switch c.Debug.Format {
	case "", "text", "json":
	default:
		return f.invalid("debug.format", fmt.Sprintf("unknown log format %q, want text or json", c.Debug.Format))
	}
	if c.Version == 1 {
		return nil
	}
	for _, key := range []string{"disabled_plugins", "required_plugins"} {
		if err := f.checkPluginIDs(key); err != nil {
			return err
		}
	}
	return nil
}

// checkPluginIDs rejects short plugin names where containerd wants full IDs.
func (f *file) checkPluginIDs(key string) error {
	list := f.root.lookup(key)
	if list == nil {
		return nil
	}
	for i, e := range list.array {
		if id, _ := e.val.(string); !strings.Contains(id, ".") {
			msg := fmt.Sprintf("plugin %q is not a full plugin ID like io.containerd.snapshotter.v1.overlayfs", id)
			return errorAt(e, indexKey(key, i), msg)
		}
	}
	return nil
}

// invalid reports a bad value at dotted key path (bare parts only).
func (f *file) invalid(path, msg string) error {
	it := f.root.lookup(strings.Split(path, ".")...)
	if it == nil {
		it = f.root
	}
	return errorAt(it, path, msg)
}

// collectPlugins gathers the [plugins] sections, mapping version 1 names.
func (f *file) collectPlugins() error {
	f.plugins = make(map[string]*section, len(f.cfg.Plugins))
	for _, name := range byPosition(f.cfg.Plugins) {
		it, key := f.cfg.Plugins[name], joinKey("plugins", name)
		if it.kind != kindTable {
			return mismatch(it, key, "table")
		}
		id := name
		if f.cfg.Version == 1 {
			var ambiguous bool
			id, ambiguous = v2PluginID(name)
			if ambiguous {
				msg := fmt.Sprintf("version 1 plugin name %q is ambiguous, read as %q", name, id)
				f.warnings = append(f.warnings, Warning{File: it.pos.File, Line: it.pos.Line, Key: key, Msg: msg})
			}
		}
		if s := f.plugins[id]; s != nil {
			deepMerge(s.item, it) // [plugins.cri] and [plugins."io.containerd.grpc.v1.cri"]
			continue
		}
		f.plugins[id] = &section{item: it, key: key}
	}
	if f.cfg.Version == 1 {
		f.cfg.DisabledPlugins = mapIDs(f.cfg.DisabledPlugins)
		f.cfg.RequiredPlugins = mapIDs(f.cfg.RequiredPlugins)
	}
	return nil
}

// byPosition lists the keys of m in the order they were written.
func byPosition(m map[string]*item) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		pa, pb := m[a].pos, m[b].pos
		if pa.Line != pb.Line {
			return pa.Line - pb.Line
		}
		if pa.Col != pb.Col {
			return pa.Col - pb.Col
		}
		return strings.Compare(a, b)
	})
	return keys
}

func mapIDs(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i], _ = v2PluginID(n)
	}
	return out
}

// deepMerge lays src over dst: tables merge key by key, anything else in
// src replaces what dst has. containerd 2.x merges imported plugin sections
// the same way (1.x replaced whole sections).
func deepMerge(dst, src *item) {
	for _, k := range src.keys {
		s, d := src.table[k], dst.table[k]
		switch {
		case d == nil:
			dst.add(k, s)
		case d.kind == kindTable && s.kind == kindTable:
			deepMerge(d, s)
		default:
			dst.table[k] = s
		}
	}
}
