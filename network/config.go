// Package network attaches berth's containers to CNI networks, for
// `berth run --network bridge`.
//
// The work is done by OCI hooks, so that it needs neither the CLI that
// started a detached container nor a running daemon: the container's spec
// carries a createRuntime hook and a postStop hook (see Hooks) that run
// `berth internal oci-hook <phase>`, which calls RunHook. createRuntime
// runs once runc has created the container's namespaces and calls
// Manager.Setup (CNI ADD); postStop runs once the container is gone and
// calls Manager.Teardown (CNI DEL).
//
// Decisions, in one place:
//
//   - The CNI container ID of container id in containerd namespace ns is
//     ns + "--" + id (see CNIContainerID). Namespaces and ids are
//     identifiers (package identifiers): letters and digits separated by
//     single '.', '_' or '-', so neither holds "--" nor starts or ends with
//     '-', and the first "--" always splits the two: the mapping is
//     one-to-one. It also keeps iptables comments and host-local's files
//     readable ("default--web").
//   - Everything berth's networking writes at run time lives under
//     Config.StateDir: the results (<ns>/<id>.json), libcni's cache
//     (_cni), host-local's leases for the default network (_ipam) and
//     the pinned network namespaces (_netns). Namespace names start with
//     a letter or digit, so the '_' directories never collide with one;
//     nothing goes to /var/lib/cni, which belongs to the CRI. One
//     exception: the leases belong to the network, as two allocators on
//     one bridge would hand out the same address twice, so the default
//     network of DefaultConfDir keeps them in DefaultStateDir whatever
//     StateDir writes it (see EnsureDefault).
//   - Setup pins the container's network namespace: it bind-mounts
//     /proc/<pid>/ns/net onto _netns/<cni id>. runc runs postStop from
//     `runc delete`, after the container's processes are gone, when
//     /proc/<pid>/ns/net no longer exists (or, worse, belongs to a new
//     process reusing the pid), and the bridge plugin removes its
//     masquerade rules only when it finds the interface in the
//     namespace. The pin keeps the namespace until Teardown, which
//     unmounts it. When the pin is gone anyway (a reboot, an unmount),
//     Teardown passes no namespace: DEL still releases the address and
//     removes the port mappings and firewall rules. The pin is a mount
//     in the mount namespace of the hook (the host's): Teardown must run
//     there too.
//   - Published ports reach the container on 127.0.0.1 too: portmap's
//     snat (on by default) marks connections from 127.0.0.1 for
//     masquerade and sets route_localnet on the bridge, so that the
//     DNAT'ed packets are not dropped as martians. The price, as with
//     kube-proxy's CVE-2020-8558: a container able to forge packets
//     (CAP_NET_RAW, or CAP_NET_ADMIN to reroute) can reach the host's
//     services listening on 127.0.0.1 through the bridge.
package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
)

// Defaults of Config and of the network EnsureDefault writes.
const (
	DefaultConfDir  = "/etc/berth/cni/net.d"
	DefaultStateDir = "/var/lib/berth-cli/networks"
	// DefaultNetwork is the CNI network of --network bridge.
	DefaultNetwork = "berth"
	DefaultBridge  = "berth0"
	DefaultSubnet  = "10.89.0.0/16"
	// IfName is the container's interface.
	IfName = "eth0"
)

// DefaultBinDirs are where the CNI plugins are looked for: Debian's
// containernetworking-plugins, then the upstream release tarballs' place.
var DefaultBinDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// Config says where berth's CNI configuration, plugins and state are.
type Config struct {
	// ConfDir holds the network configurations (*.conflist). It is not
	// /etc/cni/net.d, which the CRI uses.
	ConfDir string
	// BinDirs are searched in order for the plugins.
	BinDirs []string
	// StateDir holds the per-container results (<StateDir>/<ns>/<id>.json)
	// and, in directories starting with '_', libcni's cache, host-local's
	// leases and the pinned network namespaces.
	StateDir string
}

// WithDefaults returns c with its empty fields set to the defaults.
func (c Config) WithDefaults() Config {
	if c.ConfDir == "" {
		c.ConfDir = DefaultConfDir
	}
	if len(c.BinDirs) == 0 {
		c.BinDirs = DefaultBinDirs
	}
	c.BinDirs = slices.Clone(c.BinDirs)
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	return c
}

func (c Config) cacheDir() string { return filepath.Join(c.StateDir, "_cni") }
func (c Config) pinDir() string   { return filepath.Join(c.StateDir, "_netns") }

// ipamDir is where host-local keeps the leases of the default network,
// written into its conflist. A bridge needs exactly one allocator, so the
// leases follow the conflist, not each StateDir: the machine-wide
// DefaultConfDir gets the machine-wide DefaultStateDir, whatever StateDir
// (a CLI's --data-root, a test's) writes it first; any other ConfDir
// gets its writer's StateDir.
func (c Config) ipamDir() string {
	if filepath.Clean(c.ConfDir) == DefaultConfDir {
		return filepath.Join(DefaultStateDir, "_ipam")
	}
	return filepath.Join(c.StateDir, "_ipam")
}

// defaultNetwork is what EnsureDefault writes.
type defaultNetwork struct {
	bridge string
	subnet netip.Prefix
}

// A DefaultOption changes the network EnsureDefault writes.
type DefaultOption func(*defaultNetwork)

// WithBridge names the bridge; the default is DefaultBridge.
func WithBridge(name string) DefaultOption {
	return func(d *defaultNetwork) { d.bridge = name }
}

// WithSubnet sets the IPv4 subnet; its first address is the gateway. The
// default is DefaultSubnet.
func WithSubnet(p netip.Prefix) DefaultOption {
	return func(d *defaultNetwork) { d.subnet = p }
}

func (d defaultNetwork) validate() error {
	if d.bridge == "" || len(d.bridge) > 15 || strings.ContainsAny(d.bridge, "/: \t\n") {
		return fmt.Errorf("bridge name %q: want 1 to 15 characters without '/', ':' or spaces: %w", d.bridge, errdefs.ErrInvalidArgument)
	}
	if !d.subnet.IsValid() || !d.subnet.Addr().Is4() || d.subnet.Bits() > 30 || d.subnet.Masked() != d.subnet {
		return fmt.Errorf("subnet %s: want an IPv4 network address with a prefix of at most /30: %w", d.subnet, errdefs.ErrInvalidArgument)
	}
	return nil
}

// conflist is the JSON of the default network, fields in the order a
// reader expects them.
type conflist struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Plugins    []any  `json:"plugins"`
}

type bridgePlugin struct {
	Type        string    `json:"type"`
	Bridge      string    `json:"bridge"`
	IsGateway   bool      `json:"isGateway"`
	IPMasq      bool      `json:"ipMasq"`
	HairpinMode bool      `json:"hairpinMode"`
	IPAM        hostLocal `json:"ipam"`
}

type hostLocal struct {
	Type    string           `json:"type"`
	Ranges  [][]hostLocalNet `json:"ranges"`
	Routes  []route          `json:"routes"`
	DataDir string           `json:"dataDir"`
}

type hostLocalNet struct {
	Subnet  string `json:"subnet"`
	Gateway string `json:"gateway"`
}

type route struct {
	Dst string `json:"dst"`
}

type plainPlugin struct {
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities,omitempty"`
}

// defaultConflist renders the default network. host-local keeps its
// leases under StateDir, next to the rest of berth's state.
func (c Config) defaultConflist(d defaultNetwork) ([]byte, error) {
	list := conflist{
		CNIVersion: "1.0.0",
		Name:       DefaultNetwork,
		Plugins: []any{
			bridgePlugin{
				Type: "bridge", Bridge: d.bridge, IsGateway: true, IPMasq: true, HairpinMode: true,
				IPAM: hostLocal{
					Type:    "host-local",
					Ranges:  [][]hostLocalNet{{{Subnet: d.subnet.String(), Gateway: d.subnet.Addr().Next().String()}}},
					Routes:  []route{{Dst: "0.0.0.0/0"}},
					DataDir: c.ipamDir(),
				},
			},
			plainPlugin{Type: "portmap", Capabilities: map[string]bool{"portMappings": true}},
			plainPlugin{Type: "firewall"},
			plainPlugin{Type: "tuning"},
		},
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render the default network: %w", err)
	}
	return append(b, '\n'), nil
}

// findConflist returns the path of the *.conflist in dir whose name is
// name, or a NotFound error. Unlike libcni's LoadNetworkConf, a broken
// file of another network does not hide this one; broken files are named
// in the error when the network is not found.
func findConflist(dir, name string) (string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.conflist"))
	if err != nil {
		return "", fmt.Errorf("list network configurations in %s: %w", dir, err)
	}
	slices.Sort(files)
	var broken []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			broken = append(broken, fmt.Sprintf("%s: %v", f, err))
			continue
		}
		var head struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(b, &head); err != nil {
			broken = append(broken, fmt.Sprintf("%s: %v", f, err))
			continue
		}
		if head.Name == name {
			return f, nil
		}
	}
	msg := fmt.Sprintf("no network configuration (*.conflist) named %q in %s", name, dir)
	if len(broken) > 0 {
		msg += " (unreadable: " + strings.Join(broken, "; ") + ")"
	}
	return "", fmt.Errorf("%s: %w", msg, errdefs.ErrNotFound)
}

// EnsureDefault writes the default network, DefaultNetwork, to
// <ConfDir>/10-berth.conflist unless ConfDir already has a conflist of
// that name, which is then left as it is: an administrator may have
// changed it. The write is atomic, so concurrent callers are safe.
// host-local keeps the leases in <StateDir>/_ipam, or in
// <DefaultStateDir>/_ipam when ConfDir is DefaultConfDir: every Manager
// of a ConfDir then shares one allocator.
func (m *Manager) EnsureDefault(opts ...DefaultOption) error {
	d := defaultNetwork{bridge: DefaultBridge, subnet: netip.MustParsePrefix(DefaultSubnet)}
	for _, o := range opts {
		o(&d)
	}
	if err := d.validate(); err != nil {
		return fmt.Errorf("default network %q: %w", DefaultNetwork, err)
	}
	_, err := findConflist(m.cfg.ConfDir, DefaultNetwork)
	if err == nil || !errdefs.IsNotFound(err) {
		return err
	}
	path := filepath.Join(m.cfg.ConfDir, "10-"+DefaultNetwork+".conflist")
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("default network %q: %s exists but does not define it: move it away: %w", DefaultNetwork, path, errdefs.ErrFailedPrecondition)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("default network %q: %w", DefaultNetwork, err)
	}
	b, err := m.cfg.defaultConflist(d)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(m.cfg.ConfDir, 0o755); err != nil {
		return fmt.Errorf("default network %q: create %s: %w", DefaultNetwork, m.cfg.ConfDir, err)
	}
	if err := writeFileAtomic(path, b, 0o644); err != nil {
		return fmt.Errorf("default network %q: %w", DefaultNetwork, err)
	}
	return nil
}

// writeFileAtomic writes data to path through a temporary file in the
// same directory, so that readers see the old content or the new one.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
