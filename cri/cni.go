package cri

import (
	"github.com/berth-dev/berth/network"
)

// loadCNINetworks loads the network configurations pods will be attached
// to, as containerd's CNI loader does (network.LoadPodNetworks), and
// returns their names. The errors are messages for Status, not for
// callers to tell apart.
func loadCNINetworks(c CNIConfig) ([]string, error) {
	lists, _, err := network.LoadPodNetworks(c.ConfDir, c.MaxConfNum)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(lists))
	for i, l := range lists {
		names[i] = l.Name
	}
	return names, nil
}
