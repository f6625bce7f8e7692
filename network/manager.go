package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/berth-dev/berth/identifiers"
	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/namespaces"
)

// Result is a container's attachment to a network, as Setup made it and
// Status reports it.
type Result struct {
	Network   string        `json:"network"`
	Interface string        `json:"interface"`
	IP        string        `json:"ip"` // the container's address, without prefix length
	Gateway   string        `json:"gateway,omitempty"`
	MAC       string        `json:"mac,omitempty"`
	Ports     []PortMapping `json:"ports,omitempty"`
	// NetNS is the path CNI was given: the pin under StateDir, not
	// /proc/<pid>/ns/net.
	NetNS string `json:"netns"`
}

// Manager attaches containers to the default network and detaches them.
//
// One container, named by its containerd namespace and id, is either
// detached or attached:
//
//	detached --Setup--> attached --Teardown--> detached
//
// Setup runs CNI ADD and writes the Result to <StateDir>/<ns>/<id>.json;
// Teardown runs CNI DEL from that record and removes it; Status reads it.
// Setup on an attached container first tears the old attachment down (a
// postStop hook that never ran); Teardown of a detached one does nothing.
// A Manager holds nothing open: processes may use Managers of the same
// Config at once, for different containers.
type Manager struct {
	cfg Config
	cni *libcni.CNIConfig
}

// New returns a Manager of cfg, with defaults for its empty fields. The
// directories must be absolute: hooks run in the container's bundle.
func New(cfg Config) (*Manager, error) {
	cfg = cfg.WithDefaults()
	for _, d := range append([]string{cfg.ConfDir, cfg.StateDir}, cfg.BinDirs...) {
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("network configuration: directory %q is not absolute: %w", d, errdefs.ErrInvalidArgument)
		}
	}
	return &Manager{cfg: cfg, cni: libcni.NewCNIConfigWithCacheDir(cfg.BinDirs, cfg.cacheDir(), nil)}, nil
}

// Config returns the Manager's configuration, defaults applied.
func (m *Manager) Config() Config { return m.cfg }

// CNIContainerID is the CNI container ID of container id in namespace ns:
// ns + "--" + id, unique because identifiers never hold "--".
func CNIContainerID(ns, id string) (string, error) {
	if err := namespaces.Validate(ns); err != nil {
		return "", err
	}
	if err := identifiers.Validate(id); err != nil {
		return "", fmt.Errorf("container id: %w", err)
	}
	return ns + "--" + id, nil
}

func (m *Manager) recordPath(ns, id string) string {
	return filepath.Join(m.cfg.StateDir, ns, id+".json")
}

func (m *Manager) runtimeConf(cid, netns string, ports []PortMapping) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{ContainerID: cid, NetNS: netns, IfName: IfName}
	if len(ports) > 0 {
		rt.CapabilityArgs = map[string]any{"portMappings": ports}
	}
	return rt
}

// Setup attaches the container whose network namespace is netnsPath
// (/proc/<pid>/ns/net) to the default network with CNI ADD, publishes
// ports, and records the Result. On failure nothing is left behind.
func (m *Manager) Setup(ctx context.Context, ns, id, netnsPath string, ports []PortMapping) (*Result, error) {
	cid, err := CNIContainerID(ns, id)
	if err != nil {
		return nil, err
	}
	ports = normalizePorts(ports)
	if err := checkPorts(ports); err != nil {
		return nil, fmt.Errorf("container %q in namespace %q: %w", id, ns, err)
	}
	where := fmt.Sprintf("network %q: set up container %q in namespace %q", DefaultNetwork, id, ns)
	if err := checkNetNS(netnsPath); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", where, err, errdefs.ErrInvalidArgument)
	}
	list, confPath, err := m.loadNetwork()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if err := m.Teardown(ctx, ns, id); err != nil {
		return nil, fmt.Errorf("%s: tear down its previous attachment: %w", where, err)
	}
	if len(ports) > 0 {
		if err := guardLocalnet(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	pin := filepath.Join(m.cfg.pinDir(), cid)
	if err := pinNetNS(netnsPath, pin); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	res, err := m.add(ctx, list, cid, pin, ports)
	if err == nil {
		err = m.writeRecord(ns, id, res)
	}
	if err != nil {
		m.rollback(ctx, list, cid, pin, ports)
		return nil, fmt.Errorf("%s (CNI container ID %s, configuration %s): %w", where, cid, confPath, err)
	}
	return res, nil
}

// normalizePorts defaults the protocol to tcp, as ParsePorts does.
func normalizePorts(ports []PortMapping) []PortMapping {
	out := make([]PortMapping, len(ports))
	for i, p := range ports {
		if p.Protocol == "" {
			p.Protocol = "tcp"
		}
		out[i] = p
	}
	return out
}

// loadNetwork reads the default network's conflist from ConfDir.
func (m *Manager) loadNetwork() (*libcni.NetworkConfigList, string, error) {
	path, err := findConflist(m.cfg.ConfDir, DefaultNetwork)
	if err != nil {
		return nil, "", fmt.Errorf("%w (EnsureDefault writes it; `berth run` does so before starting a container)", err)
	}
	list, err := libcni.NetworkConfFromFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("load %s: %w: %w", path, err, errdefs.ErrInvalidArgument)
	}
	return list, path, nil
}

// add runs CNI ADD and turns its result into a Result.
func (m *Manager) add(ctx context.Context, list *libcni.NetworkConfigList, cid, netns string, ports []PortMapping) (*Result, error) {
	r, err := m.cni.AddNetworkList(ctx, list, m.runtimeConf(cid, netns, ports))
	if err != nil {
		return nil, withHint(err, m.cfg)
	}
	res, err := resultFrom(r)
	if err != nil {
		return nil, fmt.Errorf("result of CNI ADD: %w", err)
	}
	res.Network, res.NetNS, res.Ports = list.Name, netns, ports
	return res, nil
}

// rollback undoes what a failed Setup may have done: CNI does not undo
// the plugins that succeeded before the failing one.
func (m *Manager) rollback(ctx context.Context, list *libcni.NetworkConfigList, cid, pin string, ports []PortMapping) {
	l := log.G(ctx).With("network", list.Name, "cniContainerID", cid)
	if err := m.cni.DelNetworkList(ctx, list, m.runtimeConf(cid, pin, ports)); err != nil {
		l.Warn("roll back a failed network setup", "error", err)
	}
	if err := unpinNetNS(pin); err != nil {
		l.Warn("roll back a failed network setup", "error", err)
	}
}

// withHint adds what to do to a plugin's error, when berth knows better
// than the plugin's message.
func withHint(err error, cfg Config) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "failed to find plugin"):
		return fmt.Errorf("%w: install the CNI plugins (Debian: apt-get install containernetworking-plugins) or point --cni-bin-dir at them (searched %s)", err, strings.Join(cfg.BinDirs, ", "))
	case strings.Contains(msg, "iptables"):
		return fmt.Errorf("%w: check that iptables works as root (Debian: apt-get install iptables; try `iptables -t nat -L`)", err)
	case strings.Contains(msg, "already has an IP address"):
		return fmt.Errorf("%w: another network uses the bridge with another subnet: give one of them another bridge", err)
	}
	return err
}

// resultFrom picks the container's interface and first address, IPv4
// first, from a CNI result.
func resultFrom(r types.Result) (*Result, error) {
	cur, err := types100.NewResultFromResult(r)
	if err != nil {
		return nil, err
	}
	res := &Result{Interface: IfName}
	ifIndex := -1
	for i, iface := range cur.Interfaces {
		if iface.Name == IfName && iface.Sandbox != "" {
			ifIndex, res.MAC = i, iface.Mac
		}
	}
	var chosen *types100.IPConfig
	for _, ipc := range cur.IPs {
		if ipc.Interface != nil && ifIndex >= 0 && *ipc.Interface != ifIndex {
			continue
		}
		if chosen == nil || (chosen.Address.IP.To4() == nil && ipc.Address.IP.To4() != nil) {
			chosen = ipc
		}
	}
	if chosen == nil {
		return nil, fmt.Errorf("no address for %s", IfName)
	}
	res.IP = chosen.Address.IP.String()
	if chosen.Gateway != nil {
		res.Gateway = chosen.Gateway.String()
	}
	return res, nil
}

// Teardown detaches the container with CNI DEL, from its record and the
// configuration cached at ADD, then removes the record. A container with
// no record is detached already: Teardown returns nil.
func (m *Manager) Teardown(ctx context.Context, ns, id string) error {
	cid, err := CNIContainerID(ns, id)
	if err != nil {
		return err
	}
	pin := filepath.Join(m.cfg.pinDir(), cid)
	res, err := m.Status(ns, id)
	if errdefs.IsNotFound(err) {
		return unpinNetNS(pin) // only a Setup interrupted before its record leaves one
	} else if err != nil {
		return err
	}
	where := fmt.Sprintf("network %q: tear down container %q in namespace %q (CNI container ID %s)", res.Network, id, ns, cid)
	netns := res.NetNS
	if checkNetNS(netns) != nil {
		// Gone with a reboot or an unmount: DEL without a namespace still
		// releases the address and the port mappings.
		netns = ""
	}
	rt := m.runtimeConf(cid, netns, res.Ports)
	list, err := m.delConfig(res.Network, rt)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if err := m.cni.DelNetworkList(ctx, list, rt); err != nil {
		return fmt.Errorf("%s: %w", where, withHint(err, m.cfg))
	}
	if err := unpinNetNS(pin); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if err := os.Remove(m.recordPath(ns, id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: remove its record: %w", where, err)
	}
	return nil
}

// delConfig is the configuration to run DEL with: the one cached at ADD,
// so that DEL undoes what ADD did even if ConfDir changed since, else the
// current one.
func (m *Manager) delConfig(network string, rt *libcni.RuntimeConf) (*libcni.NetworkConfigList, error) {
	if list := cachedConfig(m.cni, network, rt); list != nil {
		return list, nil
	}
	if network != DefaultNetwork {
		return nil, fmt.Errorf("no cached configuration of network %q in %s: %w", network, m.cfg.cacheDir(), errdefs.ErrNotFound)
	}
	list, _, err := m.loadNetwork()
	return list, err
}

// Status returns the Result Setup recorded, or a NotFound error when the
// container is not attached.
func (m *Manager) Status(ns, id string) (*Result, error) {
	if _, err := CNIContainerID(ns, id); err != nil {
		return nil, err
	}
	path := m.recordPath(ns, id)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("network of container %q in namespace %q: %w", id, ns, errdefs.ErrNotFound)
	} else if err != nil {
		return nil, fmt.Errorf("network of container %q in namespace %q: %w", id, ns, err)
	}
	var res Result
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("network of container %q in namespace %q: decode %s: %w", id, ns, path, err)
	}
	return &res, nil
}

func (m *Manager) writeRecord(ns, id string, res *Result) error {
	path := m.recordPath(ns, id)
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the network record: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write the network record: %w", err)
	}
	return writeFileAtomic(path, append(b, '\n'), 0o600)
}

// cachedConfig is the configuration of network that libcni cached at ADD
// for rt, nil when there is none (or it is unreadable).
func cachedConfig(cni *libcni.CNIConfig, network string, rt *libcni.RuntimeConf) *libcni.NetworkConfigList {
	b, _, err := cni.GetNetworkListCachedConfig(&libcni.NetworkConfigList{Name: network}, rt)
	if err != nil || len(b) == 0 {
		return nil
	}
	list, err := libcni.NetworkConfFromBytes(b)
	if err != nil || list.Name != network {
		return nil
	}
	return list
}
