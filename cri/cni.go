package cri

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

// cniExtensions are the files of a conf dir that hold network
// configurations, as containerd's CNI loader reads them.
var cniExtensions = []string{".conf", ".conflist", ".json"}

// loadCNINetworks loads the network configurations pods will be attached
// to, as containerd's CNI loader does: the files of the conf dir in name
// order, the first MaxConfNum of them (every one when it is 0 or less).
// Any of them that does not load fails the whole load, naming the file; so
// does a conf dir without any. It returns the networks' names. The errors
// are messages for Status, not for callers to tell apart.
func loadCNINetworks(c CNIConfig) ([]string, error) {
	files, err := libcni.ConfFiles(c.ConfDir, cniExtensions)
	if err != nil {
		return nil, fmt.Errorf("read CNI conf dir %s: %w", c.ConfDir, err)
	}
	var names []string
	for _, f := range files {
		list, err := loadCNIFile(f)
		if err != nil {
			return nil, fmt.Errorf("CNI network config %s: %w", f, err)
		}
		names = append(names, list.Name)
		if c.MaxConfNum > 0 && len(names) == c.MaxConfNum {
			break
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no network config found in %s (files %s): cni plugin not initialized",
			c.ConfDir, strings.Join(cniExtensions, ", "))
	}
	return names, nil
}

func loadCNIFile(path string) (*libcni.NetworkConfigList, error) {
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
