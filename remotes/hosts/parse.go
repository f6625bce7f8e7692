package hosts

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// hostConfig is one host as written in hosts.toml, before TLS files are
// read. An empty host means the registry's own endpoint.
type hostConfig struct {
	scheme, host, path string
	capabilities       Capabilities
	ca                 []string
	client             [][2]string
	skipVerify         *bool
	header             http.Header
	overridePath       bool
	dialTimeout        time.Duration
	proxy              *url.URL
	server             bool // the top-level server, not a [host] section
	fallback           bool // https first, then plain http
}

// fileHost holds the keys a [host."URL"] section and the top level share.
type fileHost struct {
	Capabilities []string       `toml:"capabilities"`
	CA           any            `toml:"ca"`
	Client       any            `toml:"client"`
	SkipVerify   *bool          `toml:"skip_verify"`
	Header       map[string]any `toml:"header"`
	OverridePath bool           `toml:"override_path"`
	DialTimeout  string         `toml:"dial_timeout"`
	Proxy        string         `toml:"proxy"`
}

type fileConfig struct {
	Server string `toml:"server"`
	fileHost
	Host map[string]fileHost `toml:"host"`
}

// parseFile parses hosts.toml: the [host] sections in file order, then the
// server. Relative paths are taken from the file's directory.
func parseFile(file string, data []byte) ([]hostConfig, error) {
	var fc fileConfig
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fc); err != nil {
		return nil, decodeError(file, err)
	}
	keys, err := scanKeys(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v: %w", file, err, errdefs.ErrInvalidArgument)
	}
	p := parser{file: file, dir: filepath.Dir(file), lines: keys.lines}
	var configs []hostConfig
	for _, name := range keys.hosts {
		c, err := p.host(name, fc.Host[name], "host", name)
		if err != nil {
			return nil, err
		}
		configs = append(configs, c)
	}
	server, err := p.host(fc.Server, fc.fileHost)
	if err != nil {
		return nil, err
	}
	server.server = true
	return append(configs, server), nil
}

// decodeError names the file and line of a go-toml error.
func decodeError(file string, err error) error {
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		return fmt.Errorf("%s:%d: %s: %w", file, line, strings.TrimPrefix(de.Error(), "toml: "), errdefs.ErrInvalidArgument)
	}
	var se *toml.StrictMissingError
	if errors.As(err, &se) && len(se.Errors) > 0 {
		line, _ := se.Errors[0].Position()
		key := strings.Join(se.Errors[0].Key(), ".")
		return fmt.Errorf("%s:%d: unknown key %q: %w", file, line, key, errdefs.ErrInvalidArgument)
	}
	return fmt.Errorf("%s: %v: %w", file, err, errdefs.ErrInvalidArgument)
}

// parser turns decoded sections into hostConfigs, naming the line of any
// value it refuses.
type parser struct {
	file, dir string
	lines     map[string]int
}

// fail reports a bad value of the key at path (section path + key).
func (p parser) fail(keyPath []string, format string, args ...any) error {
	where := p.file
	if line := p.line(keyPath); line > 0 {
		where = fmt.Sprintf("%s:%d", p.file, line)
	}
	return fmt.Errorf("%s: %s: %w", where, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// line finds the line of keyPath or, failing that, of its closest parent.
func (p parser) line(keyPath []string) int {
	for n := len(keyPath); n > 0; n-- {
		if l, ok := p.lines[strings.Join(keyPath[:n], "\x00")]; ok {
			return l
		}
	}
	return 0
}

// host parses one section; section is its key path ("host", URL), empty
// for the top level.
func (p parser) host(rawURL string, fh fileHost, section ...string) (hostConfig, error) {
	at := func(key string) []string { return append(append([]string(nil), section...), key) }
	var c hostConfig
	var err error
	if rawURL != "" {
		urlKey := section
		if len(section) == 0 {
			urlKey = []string{"server"}
		}
		if err := p.parseURL(&c, rawURL, fh.OverridePath, urlKey); err != nil {
			return c, err
		}
	}
	c.overridePath, c.skipVerify = fh.OverridePath, fh.SkipVerify
	if c.capabilities, err = p.capabilities(fh.Capabilities, at("capabilities")); err != nil {
		return c, err
	}
	if c.ca, err = p.paths(fh.CA, at("ca")); err != nil {
		return c, err
	}
	if c.client, err = p.clientPairs(fh.Client, at("client")); err != nil {
		return c, err
	}
	if c.header, err = p.header(fh.Header, at("header")); err != nil {
		return c, err
	}
	if fh.DialTimeout != "" {
		if c.dialTimeout, err = time.ParseDuration(fh.DialTimeout); err != nil || c.dialTimeout <= 0 {
			return c, p.fail(at("dial_timeout"), "dial_timeout %q is not a positive duration such as \"5s\"", fh.DialTimeout)
		}
	}
	if fh.Proxy != "" {
		u, err := url.Parse(fh.Proxy)
		if err != nil || u.Host == "" || !proxySchemes[u.Scheme] {
			return c, p.fail(at("proxy"), "proxy %q is not an http, https, socks5 or socks5h URL with a host", fh.Proxy)
		}
		c.proxy = u
	}
	return c, nil
}

// proxySchemes are those Go's http.Transport can use for a proxy.
var proxySchemes = map[string]bool{"http": true, "https": true, "socks5": true, "socks5h": true}

// parseURL sets scheme, host and API root path from a host or server URL.
func (p parser) parseURL(c *hostConfig, raw string, override bool, key []string) error {
	s := raw
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return p.fail(key, "host %q is not an http or https URL with a host", raw)
	}
	c.scheme, c.host = u.Scheme, u.Host
	c.path = u.Path
	if c.path != "" {
		c.path = path.Clean(c.path)
		if c.path == "/" {
			c.path = ""
		}
	}
	if !override && !strings.HasSuffix(c.path, "/v2") {
		c.path += "/v2"
	}
	return nil
}

func (p parser) capabilities(names []string, key []string) (Capabilities, error) {
	if names == nil {
		return CapAll, nil
	}
	var caps Capabilities
	for _, n := range names {
		switch strings.ToLower(n) {
		case "pull":
			caps |= CapPull
		case "resolve":
			caps |= CapResolve
		case "push":
			caps |= CapPush
		default:
			return 0, p.fail(key, "unknown capability %q (want pull, resolve or push)", n)
		}
	}
	return caps, nil
}

// paths reads a string or a list of strings of file paths.
func (p parser) paths(v any, key []string) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{p.abs(v)}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, p.fail(key, "%s: want a path or a list of paths, found %v", key[len(key)-1], e)
			}
			out = append(out, p.abs(s))
		}
		return out, nil
	}
	return nil, p.fail(key, "%s: want a path or a list of paths, found %v", key[len(key)-1], v)
}

// clientPairs reads client: a path, a list of paths, or a list of
// [cert, key] pairs ("" as key: the key is in the cert file).
func (p parser) clientPairs(v any, key []string) ([][2]string, error) {
	list, ok := v.([]any)
	if !ok {
		paths, err := p.paths(v, key)
		if len(paths) == 0 {
			return nil, err
		}
		return [][2]string{{paths[0], ""}}, nil
	}
	pairs := make([][2]string, 0, len(list))
	for _, e := range list {
		switch e := e.(type) {
		case string:
			pairs = append(pairs, [2]string{p.abs(e), ""})
		case []any:
			if len(e) != 2 {
				return nil, p.fail(key, "client: a pair is [cert, key], found %v", e)
			}
			cert, ok1 := e[0].(string)
			k, ok2 := e[1].(string)
			if !ok1 || !ok2 || cert == "" {
				return nil, p.fail(key, "client: a pair is [cert, key], found %v", e)
			}
			pair := [2]string{p.abs(cert), ""}
			if k != "" {
				pair[1] = p.abs(k)
			}
			pairs = append(pairs, pair)
		default:
			return nil, p.fail(key, "client: want a path, a list of paths or of [cert, key] pairs, found %v", e)
		}
	}
	return pairs, nil
}

func (p parser) header(m map[string]any, key []string) (http.Header, error) {
	if len(m) == 0 {
		return nil, nil
	}
	h := http.Header{}
	for name, v := range m {
		switch v := v.(type) {
		case string:
			h.Add(name, v)
		case []any:
			for _, e := range v {
				s, ok := e.(string)
				if !ok {
					return nil, p.fail(append(key, name), "header %q: want a string or a list of strings, found %v", name, e)
				}
				h.Add(name, s)
			}
		default:
			return nil, p.fail(append(key, name), "header %q: want a string or a list of strings, found %v", name, v)
		}
	}
	return h, nil
}

func (p parser) abs(f string) string {
	if filepath.IsAbs(f) {
		return f
	}
	return filepath.Join(p.dir, f)
}

// fileKeys is what go-toml's decoding forgets: the order of the [host]
// sections and the line each key was written on.
type fileKeys struct {
	hosts []string
	lines map[string]int // key path joined by NUL → line
}

// scanKeys walks the document with go-toml's parser; data has been
// decoded successfully already.
func scanKeys(data []byte) (fileKeys, error) {
	k := fileKeys{lines: map[string]int{}}
	seen := map[string]bool{}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = keyParts(e.Key())
			k.record(&p, table, e.Key(), seen)
		case unstable.KeyValue:
			k.keyValue(&p, table, e, seen)
		}
	}
	return k, p.Error()
}

// keyValue records a key = value expression, descending into inline tables.
func (k *fileKeys) keyValue(p *unstable.Parser, table []string, e *unstable.Node, seen map[string]bool) {
	full := append(append([]string(nil), table...), keyParts(e.Key())...)
	k.record(p, full, e.Key(), seen)
	if v := e.Value(); v != nil && v.Kind == unstable.InlineTable {
		for it := v.Children(); it.Next(); {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				k.keyValue(p, full, c, seen)
			}
		}
	}
}

// record notes the line of path and, for host.<URL>..., the URL's order.
func (k *fileKeys) record(p *unstable.Parser, path []string, key unstable.Iterator, seen map[string]bool) {
	line := 0
	if key.Next() {
		line = p.Shape(key.Node().Raw).Start.Line
	}
	for n := 1; n <= len(path); n++ {
		j := strings.Join(path[:n], "\x00")
		if _, ok := k.lines[j]; !ok {
			k.lines[j] = line
		}
	}
	if len(path) >= 2 && path[0] == "host" && !seen[path[1]] {
		seen[path[1]] = true
		k.hosts = append(k.hosts, path[1])
	}
}

func keyParts(it unstable.Iterator) []string {
	var parts []string
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}
