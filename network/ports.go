package network

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// PortMapping publishes a container port on the host. Its JSON is the
// entry format of CNI's portMappings capability, so it is passed to the
// portmap plugin as it is.
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"` // tcp or udp
	// HostIP limits the mapping to one host address; empty is every
	// address, 127.0.0.1 included.
	HostIP string `json:"hostIP,omitempty"`
}

func (p PortMapping) String() string {
	s := fmt.Sprintf("%d:%d/%s", p.HostPort, p.ContainerPort, p.Protocol)
	if p.HostIP != "" {
		s = p.HostIP + ":" + s
	}
	return s
}

// ParsePorts parses docker's -p forms: "8080:80", "127.0.0.1:8080:80",
// "8080:80/udp". A container port alone ("80") asks for a random host
// port, which berth does not support; neither does it support port
// ranges, SCTP or IPv6 host addresses (the default network is IPv4).
func ParsePorts(specs []string) ([]PortMapping, error) {
	out := make([]PortMapping, 0, len(specs))
	for _, s := range specs {
		p, err := parsePort(s)
		if err != nil {
			return nil, fmt.Errorf("port mapping %q: %w", s, err)
		}
		out = append(out, p)
	}
	if err := checkPorts(out); err != nil {
		return nil, err
	}
	return out, nil
}

func parsePort(s string) (PortMapping, error) {
	p := PortMapping{Protocol: "tcp"}
	rest, proto, hasProto := strings.Cut(s, "/")
	if hasProto {
		p.Protocol = strings.ToLower(proto)
	}
	if strings.HasPrefix(rest, "[") || strings.Count(rest, ":") > 2 {
		return p, fmt.Errorf("IPv6 host addresses are not supported, the berth network is IPv4: %w", errdefs.ErrInvalidArgument)
	}
	parts := strings.Split(rest, ":")
	var host, ctr string
	switch len(parts) {
	case 1:
		ctr = parts[0]
	case 2:
		host, ctr = parts[0], parts[1]
	case 3:
		p.HostIP, host, ctr = parts[0], parts[1], parts[2]
	}
	if strings.Contains(host, "-") || strings.Contains(ctr, "-") {
		return p, fmt.Errorf("port ranges are not supported: publish each port: %w", errdefs.ErrInvalidArgument)
	}
	if host == "" {
		return p, fmt.Errorf("a random host port is not supported: give one, as in 8080:%s: %w", ctr, errdefs.ErrInvalidArgument)
	}
	var err error
	if p.HostPort, err = parsePortNumber("host", host); err != nil {
		return p, err
	}
	if p.ContainerPort, err = parsePortNumber("container", ctr); err != nil {
		return p, err
	}
	if len(parts) == 3 {
		a, err := netip.ParseAddr(p.HostIP)
		if err != nil {
			return p, fmt.Errorf("host address %q: %w", p.HostIP, errdefs.ErrInvalidArgument)
		}
		p.HostIP = a.String()
	}
	return p, p.validate()
}

func parsePortNumber(what, s string) (int32, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%s port %q: want a number from 1 to 65535: %w", what, s, errdefs.ErrInvalidArgument)
	}
	return int32(n), nil
}

// validate checks a mapping however it was made: by ParsePorts, from an
// annotation or by a caller of Setup.
func (p PortMapping) validate() error {
	if p.HostPort < 1 || p.HostPort > 65535 || p.ContainerPort < 1 || p.ContainerPort > 65535 {
		return fmt.Errorf("ports %d:%d: want numbers from 1 to 65535: %w", p.HostPort, p.ContainerPort, errdefs.ErrInvalidArgument)
	}
	if p.Protocol != "tcp" && p.Protocol != "udp" {
		return fmt.Errorf("protocol %q: want tcp or udp: %w", p.Protocol, errdefs.ErrInvalidArgument)
	}
	if p.HostIP != "" {
		a, err := netip.ParseAddr(p.HostIP)
		if err != nil || !a.Is4() {
			return fmt.Errorf("host address %q: want an IPv4 address: %w", p.HostIP, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// checkPorts validates ports and rejects two mappings of one host port:
// the first DNAT rule would win and the second silently do nothing.
func checkPorts(ports []PortMapping) error {
	for i, p := range ports {
		if err := p.validate(); err != nil {
			return fmt.Errorf("port mapping %s: %w", p, err)
		}
		for _, q := range ports[:i] {
			if p.HostPort == q.HostPort && p.Protocol == q.Protocol && overlaps(p.HostIP, q.HostIP) {
				return fmt.Errorf("port mappings %s and %s publish the same host port: %w", q, p, errdefs.ErrInvalidArgument)
			}
		}
	}
	return nil
}

func overlaps(a, b string) bool {
	wildcard := func(s string) bool { return s == "" || s == "0.0.0.0" }
	return a == b || wildcard(a) || wildcard(b)
}
