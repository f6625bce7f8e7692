// Package config reads berthd's configuration file, which uses containerd's
// config.toml format: version 1 (or no version key), 2 and 3.
//
// Load parses the file and the files it imports, checks the settings berth
// implements and keeps every [plugins."ID"] section, with the position of
// each key, for the plugin that owns it to decode later with DecodePlugin.
// Keys berth does not know, or knows from containerd but does not
// implement, come back as Warnings rather than errors, so a containerd
// config.toml can be used unchanged. Type mismatches, malformed TOML and
// invalid values are errors that name the file, line, column and key.
//
// Plugin IDs are not rewritten between versions 2 and 3: a version 2 file
// keeps its CRI settings under "io.containerd.grpc.v1.cri", a version 3 file
// splits them into "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images"
// and "io.containerd.grpc.v1.cri". The daemon picks the IDs by Config.Version.
// Version 1 short plugin names ([plugins.cri], [plugins.linux]) are mapped to
// the version 2 IDs with containerd's own table.
package config

import (
	"fmt"
	"reflect"
	"sort"
	"sync"

	"github.com/containerd/errdefs"
)

// Defaults of the settings berth implements.
const (
	DefaultPath           = "/etc/berth/config.toml"
	DefaultRoot           = "/var/lib/berth"
	DefaultState          = "/run/berth"
	DefaultGRPCAddress    = "/run/berth/berth.sock"
	DefaultDebugLevel     = "info"
	DefaultMaxMessageSize = 16 << 20 // containerd's default for both directions
	CurrentVersion        = 3        // Version of Default()
)

// Config is berthd's configuration. Zero values in the file mean "default",
// as in containerd: `level = ""` keeps the default level.
type Config struct {
	Version int    // 1, 2 or 3; a file without a version key is version 1
	Root    string // persistent data, absolute
	State   string // transient data, absolute
	GRPC    GRPC
	TTRPC   TTRPC
	Debug   Debug

	DisabledPlugins []string // plugin IDs not to load
	RequiredPlugins []string // plugin IDs whose failure stops the daemon
	ProxyPlugins    map[string]ProxyPlugin

	// Path is the file Load read, "" for Default().
	Path string
	// Missing reports that Path did not exist and the defaults are in use.
	Missing bool
	// Imports lists the files merged in through `imports`, in merge order.
	Imports []string

	plugins *pluginSet
}

// GRPC is the [grpc] section: the main API socket.
type GRPC struct {
	Address            string `toml:"address"`
	UID                int    `toml:"uid"`
	GID                int    `toml:"gid"`
	MaxRecvMessageSize int    `toml:"max_recv_message_size"`
	MaxSendMessageSize int    `toml:"max_send_message_size"`
}

// TTRPC is the [ttrpc] section: the socket shims call back on.
type TTRPC struct {
	Address string `toml:"address"` // "" means GRPC.Address + ".ttrpc"
	UID     int    `toml:"uid"`
	GID     int    `toml:"gid"`
}

// Debug is the [debug] section.
type Debug struct {
	Level   string `toml:"level"`   // trace, debug, info, warn, warning, error, fatal or panic
	Address string `toml:"address"` // debug socket, "" for none
	Format  string `toml:"format"`  // log format, e.g. text or json
}

// ProxyPlugin is one [proxy_plugins.NAME] section: a plugin served over gRPC
// by another process.
type ProxyPlugin struct {
	Type     string `toml:"type"`     // e.g. snapshot, content, diff
	Address  string `toml:"address"`  // socket of the serving process
	Platform string `toml:"platform"` // optional platform of a diff plugin
}

// Default returns the configuration used when no file exists.
func Default() *Config {
	c := &Config{Version: CurrentVersion, plugins: newPluginSet()}
	c.applyDefaults()
	return c
}

func (c *Config) applyDefaults() {
	setDefault(&c.Root, DefaultRoot)
	setDefault(&c.State, DefaultState)
	setDefault(&c.GRPC.Address, DefaultGRPCAddress)
	setDefault(&c.Debug.Level, DefaultDebugLevel)
	if c.GRPC.MaxRecvMessageSize == 0 {
		c.GRPC.MaxRecvMessageSize = DefaultMaxMessageSize
	}
	if c.GRPC.MaxSendMessageSize == 0 {
		c.GRPC.MaxSendMessageSize = DefaultMaxMessageSize
	}
	if c.ProxyPlugins == nil {
		c.ProxyPlugins = map[string]ProxyPlugin{}
	}
}

func setDefault(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

// TTRPCAddress is the ttrpc socket path with its default applied.
func (c *Config) TTRPCAddress() string {
	if c.TTRPC.Address != "" {
		return c.TTRPC.Address
	}
	return c.GRPC.Address + ".ttrpc"
}

// section is one [plugins."ID"] table.
type section struct {
	item    *item
	key     string // dotted key as written, for messages
	decoded bool
}

// pluginSet is shared by copies of a Config; DecodePlugin may be called from
// several goroutines while plugins initialise.
type pluginSet struct {
	mu       sync.Mutex
	sections map[string]*section
}

func newPluginSet() *pluginSet {
	return &pluginSet{sections: map[string]*section{}}
}

// PluginIDs lists, sorted, the plugin IDs that have a [plugins."ID"] section.
func (c *Config) PluginIDs() []string {
	ps := c.pluginSet()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ids := make([]string, 0, len(ps.sections))
	for id := range ps.sections {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// HasPlugin reports whether the configuration has a section for id.
func (c *Config) HasPlugin(id string) bool {
	ps := c.pluginSet()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.sections[id] != nil
}

// DecodePlugin decodes the [plugins."id"] section into v, a non-nil pointer,
// usually to a struct with `toml` tags pre-filled with the plugin's
// defaults; keys absent from the file keep their value. A missing section
// leaves v untouched. Each key v has no field for yields a Warning with the
// plugin-qualified key; a type mismatch is an *Error, after which v may be
// partly filled. Fields tagged `berth:"unimplemented"` are accepted and
// type-checked but warn when set.
func (c *Config) DecodePlugin(id string, v any) ([]Warning, error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return nil, fmt.Errorf("config: decode plugin %q: need a non-nil pointer, got %T: %w", id, v, errdefs.ErrInvalidArgument)
	}
	s := c.claim(id)
	if s == nil {
		return nil, nil
	}
	var d decoder
	err := d.decode(s.item, s.key, rv.Elem())
	return d.warnings, err
}

func (c *Config) claim(id string) *section {
	ps := c.pluginSet()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	s := ps.sections[id]
	if s != nil {
		s.decoded = true
	}
	return s
}

// UndecodedPlugins returns one Warning for each plugin section DecodePlugin
// has not been called for: after every plugin has initialised, these are
// sections no berth plugin reads.
func (c *Config) UndecodedPlugins() []Warning {
	ps := c.pluginSet()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var ws []Warning
	for _, s := range ps.sections {
		if !s.decoded {
			ws = append(ws, warnAt(s.item, s.key))
		}
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].Key < ws[j].Key })
	return ws
}

// pluginSet tolerates a Config built as a literal rather than by Default/Load.
func (c *Config) pluginSet() *pluginSet {
	if c.plugins == nil {
		return newPluginSet()
	}
	return c.plugins
}
