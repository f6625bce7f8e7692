package network

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/berth-dev/berth/log"
)

// PodConfExtensions are the files of a CNI conf dir that hold network
// configurations, as containerd's CRI reads them.
var PodConfExtensions = []string{".conf", ".conflist", ".json"}

// LoopbackNetwork is the network that brings up a pod's loopback
// interface, run before the pod's own network as containerd's CRI does.
const LoopbackNetwork = "cni-loopback"

// PodConfig says where the CRI's network configuration and plugins are.
// Unlike Manager's, it names no network: pods go on the first network of
// ConfDir, whatever its name.
type PodConfig struct {
	// ConfDir holds the configurations (*.conf, *.conflist, *.json).
	ConfDir string
	// BinDirs are searched in order for the plugins.
	BinDirs []string
	// CacheDir is libcni's cache of what ADD did, which DEL reads; ""
	// is libcni's default, /var/lib/cni, where containerd's CRI keeps it
	// and node tooling looks.
	CacheDir string
}

// LoadPodNetworks loads the network configurations of confDir the way
// containerd's CRI does: the files in name order, the first max of them
// (all when max is 0 or less), a single-plugin file made a list. A file
// that does not load fails the whole load, naming the file; so does a
// conf dir without any (NotFound). It returns the lists and their files.
func LoadPodNetworks(confDir string, max int) ([]*libcni.NetworkConfigList, []string, error) {
	files, err := libcni.ConfFiles(confDir, PodConfExtensions)
	if err != nil {
		return nil, nil, fmt.Errorf("read CNI conf dir %s: %w", confDir, err)
	}
	var (
		lists []*libcni.NetworkConfigList
		paths []string
	)
	for _, f := range files {
		list, err := loadPodNetworkFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("CNI network config %s: %w: %w", f, err, errdefs.ErrInvalidArgument)
		}
		lists, paths = append(lists, list), append(paths, f)
		if max > 0 && len(lists) == max {
			break
		}
	}
	if len(lists) == 0 {
		return nil, nil, fmt.Errorf("no network config found in %s (files %s): cni plugin not initialized: %w",
			confDir, strings.Join(PodConfExtensions, ", "), errdefs.ErrNotFound)
	}
	return lists, paths, nil
}

func loadPodNetworkFile(path string) (*libcni.NetworkConfigList, error) {
	if filepath.Ext(path) == ".conflist" {
		return libcni.NetworkConfFromFile(path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	conf, err := libcni.NetworkPluginConfFromBytes(b)
	if err != nil {
		return nil, err
	}
	// Deprecated in libcni, but single-plugin files are what many nodes
	// have, and containerd loads them this way.
	return libcni.ConfListFromConf(conf)
}

// PodNetwork attaches pod sandboxes to the first network of a CNI conf
// dir. A pod, named by its CNI container ID (the sandbox ID), is
// detached or attached:
//
//	detached --Setup--> attached --Teardown--> detached
//
// Setup runs ADD on the loopback network (when the loopback plugin is
// installed) and then on the pod network, inside a network namespace the
// caller made (NewNetNS); Teardown runs DEL on both from what libcni
// cached at ADD, so that it undoes what was done even if the conf dir
// changed since. Teardown of a detached pod does nothing. The caller
// records the PodResult: a PodNetwork keeps no state of its own.
type PodNetwork struct {
	cfg PodConfig
	cni *libcni.CNIConfig
}

// NewPodNetwork returns the PodNetwork of cfg; BinDirs default to
// DefaultBinDirs.
func NewPodNetwork(cfg PodConfig) *PodNetwork {
	if len(cfg.BinDirs) == 0 {
		cfg.BinDirs = DefaultBinDirs
	}
	return &PodNetwork{cfg: cfg, cni: libcni.NewCNIConfigWithCacheDir(cfg.BinDirs, cfg.CacheDir, nil)}
}

// PodAttachment is one pod's attachment, as Setup and Teardown take it.
type PodAttachment struct {
	// ID is the CNI container ID.
	ID string
	// NetNS is the pinned network namespace; Teardown passes none when
	// it is gone, so that DEL still releases addresses and port mappings.
	NetNS string
	// Args are CNI_ARGS (K8S_POD_NAME, ...), in order.
	Args [][2]string
	// Ports are given to plugins with the portMappings capability.
	Ports []PortMapping
}

// PodResult is what Setup did.
type PodResult struct {
	// Network is the name of the pod network, which Teardown needs.
	Network string `json:"network"`
	// ConfFile is the file the network was loaded from.
	ConfFile  string `json:"confFile"`
	Interface string `json:"interface"`
	// IPs are the pod's addresses on Interface, IPv4 first.
	IPs     []string `json:"ips"`
	Gateway string   `json:"gateway,omitempty"`
	MAC     string   `json:"mac,omitempty"`
	// Result is the CNI result of the pod network, as the plugins gave it.
	Result json.RawMessage `json:"result,omitempty"`
}

// Setup attaches the pod. On failure what succeeded is undone.
func (p *PodNetwork) Setup(ctx context.Context, a PodAttachment) (*PodResult, error) {
	lists, files, err := LoadPodNetworks(p.cfg.ConfDir, 1)
	if err != nil {
		return nil, err
	}
	list := lists[0]
	where := fmt.Sprintf("CNI network %q (%s): set up pod %s", list.Name, files[0], a.ID)
	if err := checkNetNS(a.NetNS); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", where, err, errdefs.ErrInvalidArgument)
	}
	lo := p.loopback()
	if lo != nil {
		if _, err := p.cni.AddNetworkList(ctx, lo, p.runtimeConf(a, "lo", false)); err != nil {
			return nil, fmt.Errorf("%s: loopback: %w", where, withHint(err, Config{BinDirs: p.cfg.BinDirs}))
		}
	}
	r, err := p.cni.AddNetworkList(ctx, list, p.runtimeConf(a, IfName, true))
	var res *PodResult
	if err == nil {
		res, err = podResultFrom(r)
	}
	if err != nil {
		p.del(ctx, list, a, IfName, true)
		if lo != nil {
			p.del(ctx, lo, a, "lo", false)
		}
		return nil, fmt.Errorf("%s: %w", where, withHint(err, Config{BinDirs: p.cfg.BinDirs}))
	}
	res.Network, res.ConfFile = list.Name, files[0]
	return res, nil
}

// del runs DEL for a rollback, logging what fails.
func (p *PodNetwork) del(ctx context.Context, list *libcni.NetworkConfigList, a PodAttachment, ifName string, ports bool) {
	if err := p.cni.DelNetworkList(ctx, list, p.runtimeConf(a, ifName, ports)); err != nil {
		log.G(ctx).Warn("roll back a failed pod network setup", "network", list.Name, "pod", a.ID, "error", err)
	}
}

// Teardown detaches the pod from network (PodResult.Network) and from the
// loopback network.
func (p *PodNetwork) Teardown(ctx context.Context, a PodAttachment, network string) error {
	if a.NetNS != "" && checkNetNS(a.NetNS) != nil {
		a.NetNS = ""
	}
	rt := p.runtimeConf(a, IfName, true)
	list, err := p.cachedList(network, rt)
	if err != nil {
		return fmt.Errorf("CNI network %q: tear down pod %s: %w", network, a.ID, err)
	}
	if err := p.cni.DelNetworkList(ctx, list, rt); err != nil {
		return fmt.Errorf("CNI network %q: tear down pod %s: %w", network, a.ID, withHint(err, Config{BinDirs: p.cfg.BinDirs}))
	}
	if lo := p.loopback(); lo != nil {
		if err := p.cni.DelNetworkList(ctx, lo, p.runtimeConf(a, "lo", false)); err != nil {
			log.G(ctx).Warn("tear down pod loopback", "pod", a.ID, "error", err)
		}
	}
	return nil
}

// cachedList is the configuration DEL runs with: the one cached at ADD,
// else the conf dir's configuration of that name.
func (p *PodNetwork) cachedList(network string, rt *libcni.RuntimeConf) (*libcni.NetworkConfigList, error) {
	if list := cachedConfig(p.cni, network, rt); list != nil {
		return list, nil
	}
	lists, _, err := LoadPodNetworks(p.cfg.ConfDir, 0)
	if err != nil {
		return nil, err
	}
	for _, l := range lists {
		if l.Name == network {
			return l, nil
		}
	}
	return nil, fmt.Errorf("no cached configuration and no configuration in %s: %w", p.cfg.ConfDir, errdefs.ErrNotFound)
}

// loopback is the loopback network, nil when its plugin is not
// installed (a pod's lo then stays down, as with containerd).
func (p *PodNetwork) loopback() *libcni.NetworkConfigList {
	found := false
	for _, d := range p.cfg.BinDirs {
		if _, err := os.Stat(filepath.Join(d, "loopback")); err == nil {
			found = true
			break
		}
	}
	if !found {
		return nil
	}
	list, err := libcni.NetworkConfFromBytes([]byte(`{"cniVersion": "1.0.0", "name": "` + LoopbackNetwork + `", "plugins": [{"type": "loopback"}]}`))
	if err != nil {
		return nil
	}
	return list
}

func (p *PodNetwork) runtimeConf(a PodAttachment, ifName string, ports bool) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{ContainerID: a.ID, NetNS: a.NetNS, IfName: ifName, Args: a.Args}
	if ports && len(a.Ports) > 0 {
		rt.CapabilityArgs = map[string]any{"portMappings": a.Ports}
	}
	return rt
}

// podResultFrom picks the pod's interface, its addresses (IPv4 first)
// and gateway from a CNI result.
func podResultFrom(r types.Result) (*PodResult, error) {
	cur, err := types100.NewResultFromResult(r)
	if err != nil {
		return nil, fmt.Errorf("result of CNI ADD: %w", err)
	}
	raw, _ := json.Marshal(cur)
	res := &PodResult{Interface: IfName, Result: raw}
	ifIndex := -1
	for i, iface := range cur.Interfaces {
		if iface.Name == IfName && iface.Sandbox != "" {
			ifIndex, res.MAC = i, iface.Mac
		}
	}
	var v4, v6 []string
	for _, ipc := range cur.IPs {
		if ipc.Interface != nil && ifIndex >= 0 && *ipc.Interface != ifIndex {
			continue
		}
		if ipc.Address.IP.To4() != nil {
			v4 = append(v4, ipc.Address.IP.String())
			if res.Gateway == "" && ipc.Gateway != nil {
				res.Gateway = ipc.Gateway.String()
			}
		} else {
			v6 = append(v6, ipc.Address.IP.String())
		}
	}
	res.IPs = append(v4, v6...)
	if len(res.IPs) == 0 {
		return nil, fmt.Errorf("result of CNI ADD: no address for %s", IfName)
	}
	return res, nil
}
