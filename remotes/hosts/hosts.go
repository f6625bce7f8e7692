// Package hosts reads which hosts serve a registry, in containerd's
// certs.d layout (containerd's docs/hosts.md), so that a hosts directory
// written for containerd works unchanged with berth.
//
// The directory holds one subdirectory per registry host namespace:
//
//	/etc/berth/certs.d/
//	├── docker.io/hosts.toml
//	├── 127.0.0.1_5000_/hosts.toml   (host:port, the form without a colon)
//	├── 127.0.0.1:5000/hosts.toml    (host:port, the same, tried second)
//	└── _default/hosts.toml          (any registry without a directory)
//
// The first of "host_port_", "host:port" (or "host") and "_default" that
// exists is used. Its hosts.toml lists [host."URL"] sections, tried in the
// order they are written, then the top-level server (the registry itself
// when server is not set). Without hosts.toml, the directory's Docker
// style certificates apply to the registry itself: *.crt are CAs, *.cert
// with the matching *.key are client certificates.
//
// Keys, at the top level (for the server) and in each [host."URL"]:
//
//	server        URL of the registry's own endpoint (top level only)
//	capabilities  ["pull", "resolve", "push"]; all three when absent
//	ca            CA file or list of files (relative to the directory)
//	client        client cert file (key in the same file), list of such
//	              files, or list of [cert, key] pairs
//	skip_verify   do not verify the server's certificate
//	header        extra request headers: name = "v" or ["v1", "v2"]
//	override_path the URL's path is the API root (no "/v2" appended)
//	dial_timeout  connect timeout ("1s"), 30s when absent
//	proxy         HTTP proxy URL for this host (else the environment's)
//
// A URL without a scheme is https. For a registry without a configured
// server, the default is https://<host>/v2 (docker.io:
// https://registry-1.docker.io/v2), with all capabilities. A loopback
// registry (localhost, 127.0.0.0/8, ::1) behaves as in containerd: on
// port 80 plain http; on port 443 or no port https without certificate
// verification; on any other port https without verification first,
// falling back to plain http when the server answers the TLS handshake in
// plain HTTP (Host.HTTPFallback). An http:// host that also sets ca,
// client or skip_verify is tried the same way, https first.
//
// Differences from containerd, deliberate: a malformed hosts.toml or an
// unknown key fails the operation with an error naming the file and line
// (containerd logs it and falls back to the registry itself, which sends
// traffic the operator meant to keep away from it; a misspelt
// "capabilites" would silently give a pull-only mirror push rights); and
// "capabilities = []" means none (the host is never used), where
// containerd reads it as all.
package hosts

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// Capabilities are the operations a host may be used for.
type Capabilities uint8

const (
	// CapPull allows fetching content by digest.
	CapPull Capabilities = 1 << iota
	// CapResolve allows resolving a tag to a digest, a trusted operation.
	CapResolve
	// CapPush allows uploading content.
	CapPush

	// CapAll is what a host has when its capabilities are not configured.
	CapAll = CapPull | CapResolve | CapPush
)

// Has reports whether c includes every capability of want.
func (c Capabilities) Has(want Capabilities) bool { return c&want == want }

// String lists the capabilities: "pull,resolve".
func (c Capabilities) String() string {
	var names []string
	for _, n := range []struct {
		c    Capabilities
		name string
	}{{CapPull, "pull"}, {CapResolve, "resolve"}, {CapPush, "push"}} {
		if c&n.c != 0 {
			names = append(names, n.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// Host is one endpoint that serves a registry: a mirror or the registry
// itself.
type Host struct {
	// Scheme is "https" or "http".
	Scheme string
	// Host is host[:port].
	Host string
	// Path is the API root: "/v2", or the configured path as-is with
	// override_path.
	Path string
	// Capabilities gates which operations may use this host.
	Capabilities Capabilities
	// Header holds extra request headers; nil when none.
	Header http.Header
	// TLS is the client TLS configuration; nil means the system's
	// defaults. Configs are shared between calls while the files they
	// were built from are unchanged, so a caller may key a transport
	// cache on the pointer.
	TLS *tls.Config
	// HTTPFallback asks to retry the request in plain http when the
	// server answers the https handshake with plain HTTP.
	HTTPFallback bool
	// OverridePath is true when Path came from override_path.
	OverridePath bool
	// DialTimeout bounds connecting; 0 means the transport's default.
	DialTimeout time.Duration
	// Proxy is the HTTP proxy for this host; nil means the environment's.
	Proxy *url.URL
	// Mirror is true for hosts from [host."URL"] sections, false for the
	// registry's server.
	Mirror bool
}

// URL returns the API root of h: "https://registry-1.docker.io/v2".
func (h Host) URL() string {
	return h.Scheme + "://" + h.Host + h.Path
}

// HostsFunc returns the hosts serving registryHost (the host[:port] part
// of a reference, "docker.io" for Docker Hub), in the order to try them.
type HostsFunc func(registryHost string) ([]Host, error)

// defaultHosts is shared so that its TLS configs (loopback registries
// skip verification) stay the same between calls.
var defaultHosts = ConfigureHosts("")

// DefaultHosts returns the registry itself, as when no hosts directory is
// configured.
func DefaultHosts(registryHost string) ([]Host, error) {
	return defaultHosts(registryHost)
}

// ConfigureHosts returns a HostsFunc reading the hosts directory dir. The
// files are read at each call, so edits take effect without a restart.
// An empty dir or one that does not exist gives the defaults.
func ConfigureHosts(dir string) HostsFunc {
	tlsCache := newTLSCache()
	return func(registryHost string) ([]Host, error) {
		if err := checkRegistryHost(registryHost); err != nil {
			return nil, err
		}
		configs, err := loadDir(dir, registryHost)
		if err != nil {
			return nil, err
		}
		return buildHosts(registryHost, configs, tlsCache)
	}
}

// checkRegistryHost refuses names that would escape the hosts directory.
func checkRegistryHost(h string) error {
	if h == "" || h == "." || h == ".." || strings.ContainsAny(h, `/\`) || strings.ContainsRune(h, 0) {
		return fmt.Errorf("registry host %q: not a host[:port]: %w", h, errdefs.ErrInvalidArgument)
	}
	return nil
}

// hostDirs lists the directories that may configure registryHost, in the
// order containerd looks for them.
func hostDirs(root, registryHost string) []string {
	var dirs []string
	if i := strings.LastIndex(registryHost, ":"); i > 0 {
		dirs = append(dirs, filepath.Join(root, registryHost[:i]+"_"+registryHost[i+1:]+"_"))
	}
	return append(dirs, filepath.Join(root, registryHost), filepath.Join(root, "_default"))
}

// loadDir reads the configuration of registryHost under root: the hosts in
// file order and the server last. nil means no configuration.
func loadDir(root, registryHost string) ([]hostConfig, error) {
	if root == "" {
		return nil, nil
	}
	for _, dir := range hostDirs(root, registryHost) {
		fi, err := os.Stat(dir)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("hosts directory for %q: %w", registryHost, err)
		}
		if !fi.IsDir() {
			continue
		}
		file := filepath.Join(dir, "hosts.toml")
		data, err := os.ReadFile(file)
		if os.IsNotExist(err) {
			return loadCertFiles(dir)
		}
		if err != nil {
			return nil, fmt.Errorf("hosts file for %q: %w", registryHost, err)
		}
		return parseFile(file, data)
	}
	return nil, nil
}

// loadCertFiles reads a directory in Docker's certs.d layout: the CAs and
// client certificates of the registry itself.
func loadCertFiles(dir string) ([]hostConfig, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("certificates directory %s: %w", dir, err)
	}
	server := hostConfig{capabilities: CapAll}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() {
			continue
		}
		switch {
		case strings.HasSuffix(name, ".crt"):
			server.ca = append(server.ca, filepath.Join(dir, name))
		case strings.HasSuffix(name, ".cert"):
			pair := [2]string{filepath.Join(dir, name), ""}
			key := filepath.Join(dir, strings.TrimSuffix(name, ".cert")+".key")
			if _, err := os.Stat(key); err == nil {
				pair[1] = key
			}
			server.client = append(server.client, pair)
		}
	}
	return []hostConfig{server}, nil
}

// buildHosts completes the server's defaults and loads TLS material.
func buildHosts(registryHost string, configs []hostConfig, cache *tlsCache) ([]Host, error) {
	if len(configs) == 0 {
		configs = []hostConfig{{capabilities: CapAll}}
	}
	hosts := make([]Host, 0, len(configs))
	for i := range configs {
		c := &configs[i]
		if c.host == "" {
			defaultServer(c, registryHost)
		}
		h := Host{
			Scheme: c.scheme, Host: c.host, Path: c.path,
			Capabilities: c.capabilities, Header: c.header,
			OverridePath: c.overridePath, DialTimeout: c.dialTimeout,
			Proxy: c.proxy, Mirror: !c.server,
		}
		explicitTLS := c.ca != nil || c.client != nil || c.skipVerify != nil
		if explicitTLS {
			cfg, err := cache.get(c)
			if err != nil {
				return nil, err
			}
			h.TLS = cfg
		}
		if c.fallback || (explicitTLS && h.Scheme == "http" && port(h.Host) != "80") {
			h.Scheme, h.HTTPFallback = "https", true
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// defaultServer makes c the registry's own endpoint.
func defaultServer(c *hostConfig, registryHost string) {
	c.server = true
	c.scheme, c.host, c.path = "https", registryHost, "/v2"
	switch {
	case registryHost == "docker.io":
		c.host = "registry-1.docker.io"
	case IsLocalhost(registryHost):
		yes := true
		switch port(registryHost) {
		case "80":
			c.scheme = "http"
		case "", "443":
			c.skipVerify = &yes
		default:
			c.skipVerify, c.fallback = &yes, true
		}
	}
}

// IsLocalhost reports whether host[:port] names the loopback interface.
func IsLocalhost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func port(hostport string) string {
	if _, p, err := net.SplitHostPort(hostport); err == nil {
		return p
	}
	return ""
}
