package network

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// The portmap plugin makes published ports answer on 127.0.0.1 by setting
// route_localnet on the bridge, which also lets a container send packets
// to the host's loopback services (CVE-2020-8558). guardLocalnet closes
// that as kube-proxy does: the INPUT chain drops packets for 127.0.0.0/8
// that do not come from 127.0.0.0/8, unless they belong to a connection
// the host started or were DNATed (the published ports themselves). The
// rule is idempotent, host-wide and left in place: it only drops packets
// the kernel would call martian without route_localnet.
var localnetRule = []string{
	"INPUT", "!", "-s", "127.0.0.0/8", "-d", "127.0.0.0/8",
	"-m", "comment", "--comment", "berth: block non-loopback traffic to 127.0.0.0/8 (CVE-2020-8558)",
	"-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP",
}

// iptables runs the iptables binary; a variable for the unit tests.
var runIptables = func(ctx context.Context, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, "iptables", append([]string{"-w", "5"}, args...)...).CombinedOutput()
}

func guardLocalnet(ctx context.Context) error {
	if _, err := runIptables(ctx, append([]string{"-t", "filter", "-C"}, localnetRule...)...); err == nil {
		return nil
	}
	if out, err := runIptables(ctx, append([]string{"-t", "filter", "-I"}, localnetRule...)...); err != nil {
		return fmt.Errorf("guard 127.0.0.0/8 against containers (iptables -I %s): %w: %s",
			strings.Join(localnetRule, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
