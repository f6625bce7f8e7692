package config

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
)

// Load reads the configuration at path (DefaultPath when path is "") and the
// files it imports.
//
// A missing file is not an error: Load returns Default() with Path set and
// Missing true. Malformed TOML, a value of the wrong type and an invalid
// value are *Error values naming file, line, column and key. Keys berth does
// not know, and containerd keys berth does not implement set to a non-zero
// value, come back as warnings.
//
// `imports` is honoured as containerd does it: entries are file paths or,
// when they contain "*", glob patterns; relative ones are resolved against
// the directory of the file that names them. Files are merged breadth-first,
// each once, later files overriding earlier ones: settings that are non-zero
// replace, disabled_plugins and required_plugins are unioned, proxy plugins
// replace by name and plugin sections are merged key by key. An imported
// file may not have a higher version than the root file.
func Load(path string) (*Config, []Warning, error) {
	if path == "" {
		path = DefaultPath
	}
	root, err := readConfigFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		c := Default()
		c.Path, c.Missing = path, true
		return c, nil, nil
	}
	if err != nil {
		return nil, nil, wrapRead(err)
	}
	l := &loader{
		c:      &Config{Version: root.cfg.Version, Path: path, plugins: newPluginSet()},
		loaded: map[string]bool{filepath.Clean(path): true},
	}
	l.merge(root)
	if err := l.followImports(root); err != nil {
		return nil, nil, err
	}
	l.c.applyDefaults()
	return l.c, l.warnings, nil
}

// wrapRead prefixes I/O errors; *Error already says where it comes from.
func wrapRead(err error) error {
	var ce *Error
	if errors.As(err, &ce) {
		return err
	}
	return fmt.Errorf("config: %w", err)
}

type loader struct {
	c        *Config
	warnings []Warning
	loaded   map[string]bool // cleaned paths, against import cycles
}

// importRef is a file to import and the `imports` entry that named it.
type importRef struct {
	path string
	at   *item
	key  string
}

func (l *loader) followImports(root *file) error {
	queue, err := resolveImports(root)
	for len(queue) > 0 && err == nil {
		ref := queue[0]
		queue = queue[1:]
		if l.loaded[ref.path] {
			continue
		}
		l.loaded[ref.path] = true
		var f *file
		if f, err = l.importFile(ref); err != nil {
			break
		}
		var more []importRef
		more, err = resolveImports(f)
		queue = append(queue, more...)
	}
	return err
}

func (l *loader) importFile(ref importRef) (*file, error) {
	f, err := readConfigFile(ref.path)
	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			return nil, err
		}
		at := ref.at.pos
		return nil, fmt.Errorf("%s: %w", render(at.File, at.Line, at.Col, ref.key, "cannot import"), err)
	}
	if err := l.checkVersion(f); err != nil {
		return nil, err
	}
	l.merge(f)
	l.c.Imports = append(l.c.Imports, ref.path)
	return f, nil
}

// checkVersion applies containerd's rule that a drop-in may not be newer
// than the root file. An older one is merged as written: its plugin
// sections keep their IDs (version 1 names are still mapped), so say so.
func (l *loader) checkVersion(f *file) error {
	v, rootV := f.cfg.Version, l.c.Version
	if v > rootV {
		return f.invalid("version", fmt.Sprintf("imported file has version %d, newer than version %d of %s", v, rootV, l.c.Path))
	}
	if v < rootV && rootV == 3 && len(f.plugins) > 0 {
		at := f.root.lookup("version")
		if at == nil {
			at = f.root
		}
		msg := fmt.Sprintf("version %d file imported into a version 3 configuration: plugin sections are used as written, not migrated", v)
		l.warnings = append(l.warnings, Warning{File: f.path, Line: at.pos.Line, Key: "version", Msg: msg})
	}
	return nil
}

// resolveImports lists the files f imports, in the order written.
func resolveImports(f *file) ([]importRef, error) {
	list := f.root.lookup("imports")
	if list == nil {
		return nil, nil
	}
	dir := filepath.Dir(f.path)
	var out []importRef
	for i, e := range list.array {
		p, key := e.val.(string), indexKey("imports", i)
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if !strings.Contains(p, "*") {
			out = append(out, importRef{path: filepath.Clean(p), at: e, key: key})
			continue
		}
		matches, err := filepath.Glob(p)
		if err != nil {
			return nil, errorAt(e, key, fmt.Sprintf("bad pattern %q: %v", p, err))
		}
		for _, m := range matches {
			out = append(out, importRef{path: filepath.Clean(m), at: e, key: key})
		}
	}
	return out, nil
}

// merge lays a file over the configuration built so far, with containerd's
// rules: non-zero values override, plugin lists are unioned, proxy plugins
// replace by name, plugin sections merge key by key.
func (l *loader) merge(f *file) {
	c, fc := l.c, &f.cfg
	override(&c.Root, fc.Root)
	override(&c.State, fc.State)
	mergeGRPC(&c.GRPC, fc.GRPC.GRPC)
	override(&c.TTRPC.Address, fc.TTRPC.Address)
	override(&c.TTRPC.UID, fc.TTRPC.UID)
	override(&c.TTRPC.GID, fc.TTRPC.GID)
	override(&c.Debug.Level, fc.Debug.Level)
	override(&c.Debug.Address, fc.Debug.Address)
	override(&c.Debug.Format, fc.Debug.Format)
	c.DisabledPlugins = union(c.DisabledPlugins, fc.DisabledPlugins)
	c.RequiredPlugins = union(c.RequiredPlugins, fc.RequiredPlugins)
	for name, p := range fc.ProxyPlugins {
		if c.ProxyPlugins == nil {
			c.ProxyPlugins = map[string]ProxyPlugin{}
		}
		c.ProxyPlugins[name] = p.ProxyPlugin
	}
	sections := c.plugins.sections
	for id, s := range f.plugins {
		if old := sections[id]; old != nil {
			deepMerge(old.item, s.item)
			continue
		}
		sections[id] = s
	}
	l.warnings = append(l.warnings, f.warnings...)
}

func mergeGRPC(dst *GRPC, src GRPC) {
	override(&dst.Address, src.Address)
	override(&dst.UID, src.UID)
	override(&dst.GID, src.GID)
	override(&dst.MaxRecvMessageSize, src.MaxRecvMessageSize)
	override(&dst.MaxSendMessageSize, src.MaxSendMessageSize)
}

func override[T comparable](dst *T, src T) {
	var zero T
	if src != zero {
		*dst = src
	}
}

func union(dst, src []string) []string {
	for _, s := range src {
		if !slices.Contains(dst, s) {
			dst = append(dst, s)
		}
	}
	return dst
}

// v1PluginIDs maps the short plugin names version 1 files used to plugin
// IDs; the table is containerd's, from its version 1 to 2 migration.
var v1PluginIDs = map[string]string{
	"cri":          "io.containerd.grpc.v1.cri",
	"cgroups":      "io.containerd.monitor.v1.cgroups",
	"linux":        "io.containerd.runtime.v1.linux",
	"scheduler":    "io.containerd.gc.v1.scheduler",
	"bolt":         "io.containerd.metadata.v1.bolt",
	"task":         "io.containerd.runtime.v2.task",
	"opt":          "io.containerd.internal.v1.opt",
	"restart":      "io.containerd.internal.v1.restart",
	"tracing":      "io.containerd.internal.v1.tracing",
	"otlp":         "io.containerd.tracing.processor.v1.otlp",
	"aufs":         "io.containerd.snapshotter.v1.aufs",
	"btrfs":        "io.containerd.snapshotter.v1.btrfs",
	"devmapper":    "io.containerd.snapshotter.v1.devmapper",
	"native":       "io.containerd.snapshotter.v1.native",
	"overlayfs":    "io.containerd.snapshotter.v1.overlayfs",
	"zfs":          "io.containerd.snapshotter.v1.zfs",
	"windows":      "io.containerd.snapshotter.v1.windows",
	"windows-lcow": "io.containerd.snapshotter.v1.windows-lcow",
}

// v2PluginID maps a version 1 plugin name to its ID. Names with a dot are
// IDs already. Names outside the table follow containerd's guess: "-service"
// names are services, anything else a gRPC plugin; ambiguous reports a guess.
func v2PluginID(name string) (id string, ambiguous bool) {
	if strings.Contains(name, ".") {
		return name, false
	}
	if id, ok := v1PluginIDs[name]; ok {
		return id, false
	}
	if strings.HasSuffix(name, "-service") {
		return "io.containerd.service.v1." + name, false
	}
	return "io.containerd.grpc.v1." + name, true
}
