package network

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
)

func TestParsePorts(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []PortMapping
		err  string // part of the error; "" when valid
	}{
		{in: nil, want: []PortMapping{}},
		{in: []string{"8080:80"}, want: []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}}},
		{in: []string{"127.0.0.1:8080:80"}, want: []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp", HostIP: "127.0.0.1"}}},
		{in: []string{"8080:80/udp"}, want: []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "udp"}}},
		{in: []string{"8080:80/TCP"}, want: []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}}},
		{in: []string{"0.0.0.0:53:53/udp", "53:53/tcp"}, want: []PortMapping{
			{HostPort: 53, ContainerPort: 53, Protocol: "udp", HostIP: "0.0.0.0"},
			{HostPort: 53, ContainerPort: 53, Protocol: "tcp"},
		}},
		{in: []string{"127.0.0.1:80:80", "192.0.2.1:80:80"}, want: []PortMapping{
			{HostPort: 80, ContainerPort: 80, Protocol: "tcp", HostIP: "127.0.0.1"},
			{HostPort: 80, ContainerPort: 80, Protocol: "tcp", HostIP: "192.0.2.1"},
		}},

		{in: []string{"80"}, err: "random host port is not supported"},
		{in: []string{"127.0.0.1::80"}, err: "random host port is not supported"},
		{in: []string{"8000-8001:8000-8001"}, err: "port ranges are not supported"},
		{in: []string{"[::1]:8080:80"}, err: "IPv6 host addresses are not supported"},
		{in: []string{"::1:8080:80"}, err: "IPv6 host addresses are not supported"},
		{in: []string{"8080:80/sctp"}, err: `protocol "sctp": want tcp or udp`},
		{in: []string{"8080:80/"}, err: `protocol "": want tcp or udp`},
		{in: []string{"0:80"}, err: `host port "0"`},
		{in: []string{"8080:65536"}, err: `container port "65536"`},
		{in: []string{"x:80"}, err: `host port "x"`},
		{in: []string{":80"}, err: "random host port"},
		{in: []string{"localhost:8080:80"}, err: `host address "localhost"`},
		{in: []string{"8080:80", "8080:81"}, err: "publish the same host port"},
		{in: []string{"127.0.0.1:8080:80", "8080:81"}, err: "publish the same host port"},
	} {
		got, err := ParsePorts(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errdefs.IsInvalidArgument(err) {
				t.Errorf("ParsePorts(%q) = %v, %v; want an InvalidArgument error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePorts(%q): %v", tc.in, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("ParsePorts(%q) (-want +got):\n%s", tc.in, d)
		}
	}
}

// FuzzParsePorts: -p values come from users. Whatever ParsePorts accepts
// is a valid mapping that prints back to a value parsing to itself.
func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"8080:80", "127.0.0.1:8080:80/udp", "80", "[::1]:1:2", "1-2:3", "a:b:c:d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParsePorts([]string{s})
		if err != nil {
			return
		}
		if err := checkPorts(got); err != nil {
			t.Fatalf("ParsePorts(%q) accepted an invalid mapping: %v", s, err)
		}
		again, err := ParsePorts([]string{got[0].String()})
		if err != nil || !cmp.Equal(got, again) {
			t.Fatalf("ParsePorts(%q) = %v, which reparses to %v, %v", s, got, again, err)
		}
	})
}
