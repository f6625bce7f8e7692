package network

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFilterResolvConf(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		servers        int
	}{
		{
			name: "loopback servers dropped",
			in:   "# host\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nsearch example.com\noptions edns0 trust-ad\n",
			want: "# host\nnameserver 10.0.0.2\nsearch example.com\noptions edns0 trust-ad\n", servers: 1,
		},
		{
			name: "none left keeps search and options",
			in:   "nameserver 127.0.0.1\nsearch a b\r\noptions ndots:2",
			want: "search a b\noptions ndots:2\n", servers: 0,
		},
		{
			name: "IPv6 and zones kept",
			in:   "nameserver 2001:db8::1\nnameserver fe80::1%eth0\nnameserver ::ffff:127.0.0.1\n",
			want: "nameserver 2001:db8::1\nnameserver fe80::1%eth0\n", servers: 2,
		},
		{name: "empty", in: "", want: "", servers: 0},
	} {
		got, n := filterResolvConf([]byte(tc.in), "/etc/resolv.conf")
		header, body, _ := strings.Cut(string(got), "\n")
		if !strings.Contains(header, "/etc/resolv.conf") || body != tc.want || n != tc.servers {
			t.Errorf("%s: filterResolvConf(%q) = %q, %d; want the header then %q, %d", tc.name, tc.in, got, n, tc.want, tc.servers)
		}
	}
}

// TestResolvConfFallsBackToResolved: with only systemd-resolved's stub,
// the upstream servers are used.
func TestResolvConfFallsBackToResolved(t *testing.T) {
	dir := t.TempDir()
	stub, upstream := filepath.Join(dir, "stub"), filepath.Join(dir, "upstream")
	if err := os.WriteFile(stub, []byte("nameserver 127.0.0.53\nsearch lan\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(upstream, []byte("nameserver 192.0.2.53\nsearch lan\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer func(h, r string) { hostResolvConf, resolvedResolvConf = h, r }(hostResolvConf, resolvedResolvConf)
	hostResolvConf, resolvedResolvConf = stub, upstream
	got, err := ResolvConf()
	if err != nil || !strings.Contains(string(got), "nameserver 192.0.2.53\nsearch lan\n") {
		t.Errorf("ResolvConf() = %q, %v; want the upstream server", got, err)
	}
	resolvedResolvConf = filepath.Join(dir, "missing")
	got, err = ResolvConf()
	if err != nil || strings.Contains(string(got), "nameserver") || !strings.Contains(string(got), "search lan") {
		t.Errorf("ResolvConf() without resolved = %q, %v; want no server, the search kept", got, err)
	}
}

func TestWriteResolvConf(t *testing.T) {
	m, err := New(Config{ConfDir: t.TempDir(), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	path, err := m.WriteResolvConf("default", "web")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(m.Config().StateDir, "default", "web.resolv.conf"); path != want {
		t.Errorf("path = %s, want %s", path, want)
	}
	b, err := os.ReadFile(path)
	if err != nil || strings.Contains(string(b), "nameserver 127.") {
		t.Errorf("written resolv.conf = %q, %v", b, err)
	}
	if err := m.RemoveResolvConf("default", "web"); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveResolvConf("default", "web"); err != nil {
		t.Errorf("second RemoveResolvConf: %v", err)
	}
	if _, err := m.WriteResolvConf("default", "../x"); err == nil {
		t.Error("WriteResolvConf accepted the id ../x")
	}
}

// FuzzFilterResolvConf: the host's file is not berth's to trust. No
// loopback server survives and every other line does.
func FuzzFilterResolvConf(f *testing.F) {
	f.Add("nameserver 127.0.0.53\nsearch x\n")
	f.Add("nameserver\tfe80::1%lo\n\nnameserver ::1\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		out, n := filterResolvConf([]byte(in), "src")
		servers := 0
		for line := range strings.Lines(string(out)) {
			fields := strings.Fields(line)
			if len(fields) >= 2 && fields[0] == "nameserver" {
				if isLoopback(fields[1]) {
					t.Fatalf("loopback server kept: %q", line)
				}
				servers++
			}
		}
		if servers != n {
			t.Fatalf("%d servers written, %d reported", servers, n)
		}
	})
}
