package hosts

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// writeHosts writes dir/<ns>/hosts.toml and returns the file's path.
func writeHosts(t *testing.T, dir, ns, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, ns), 0o755); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, ns, "hosts.toml")
	if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// urls lists the hosts as "URL caps" strings.
func urls(hosts []Host) []string {
	var out []string
	for _, h := range hosts {
		out = append(out, h.URL()+" "+h.Capabilities.String())
	}
	return out
}

func TestDefaults(t *testing.T) {
	for _, tc := range []struct {
		registry, url string
		fallback      bool
		skipVerify    bool
	}{
		{"docker.io", "https://registry-1.docker.io/v2", false, false},
		{"quay.io", "https://quay.io/v2", false, false},
		{"registry.example.com:5000", "https://registry.example.com:5000/v2", false, false},
		{"localhost:5000", "https://localhost:5000/v2", true, true},
		{"127.0.0.1:5000", "https://127.0.0.1:5000/v2", true, true},
		{"[::1]:5000", "https://[::1]:5000/v2", true, true},
		{"127.0.0.1:80", "http://127.0.0.1:80/v2", false, false},
		{"localhost", "https://localhost/v2", false, true},
		{"127.0.0.1:443", "https://127.0.0.1:443/v2", false, true},
	} {
		t.Run(tc.registry, func(t *testing.T) {
			hosts, err := DefaultHosts(tc.registry)
			if err != nil {
				t.Fatal(err)
			}
			if len(hosts) != 1 {
				t.Fatalf("got %d hosts, want 1", len(hosts))
			}
			h := hosts[0]
			if h.URL() != tc.url || h.Capabilities != CapAll || h.Mirror {
				t.Errorf("got %s %s mirror=%t, want %s pull,resolve,push server", h.URL(), h.Capabilities, h.Mirror, tc.url)
			}
			if h.HTTPFallback != tc.fallback {
				t.Errorf("HTTPFallback = %t, want %t", h.HTTPFallback, tc.fallback)
			}
			if skip := h.TLS != nil && h.TLS.InsecureSkipVerify; skip != tc.skipVerify {
				t.Errorf("skip verify = %t, want %t", skip, tc.skipVerify)
			}
		})
	}
}

func TestFileOrderAndKeys(t *testing.T) {
	dir := t.TempDir()
	writeHosts(t, dir, "docker.io", `
server = "https://registry-1.docker.io"

[host."https://zz-mirror.example.com"]
  capabilities = ["pull"]
  [host."https://zz-mirror.example.com".header]
    x-custom = ["a", "b"]
    x-single = "c"

[host."http://aa-mirror.internal:5000"]
  capabilities = ["pull", "resolve"]
  dial_timeout = "1s"

[host."https://non-compliant.example.com/v2/upstream"]
  capabilities = ["pull"]
  override_path = true

[host."https://prefix.example.com/registry"]
  capabilities = ["pull"]

[host."mm-mirror.example.com"]
`)
	hosts, err := ConfigureHosts(dir)("docker.io")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"https://zz-mirror.example.com/v2 pull",
		"http://aa-mirror.internal:5000/v2 pull,resolve",
		"https://non-compliant.example.com/v2/upstream pull",
		"https://prefix.example.com/registry/v2 pull",
		"https://mm-mirror.example.com/v2 pull,resolve,push",
		"https://registry-1.docker.io/v2 pull,resolve,push",
	}
	if got := urls(hosts); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("hosts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := hosts[0].Header.Values("X-Custom"); strings.Join(got, ",") != "a,b" {
		t.Errorf("header x-custom = %q, want [a b]", got)
	}
	if got := hosts[0].Header.Get("X-Single"); got != "c" {
		t.Errorf("header x-single = %q, want c", got)
	}
	if hosts[1].DialTimeout != time.Second {
		t.Errorf("dial_timeout = %v, want 1s", hosts[1].DialTimeout)
	}
	if !hosts[2].OverridePath || hosts[3].OverridePath {
		t.Errorf("override_path: got %t, %t; want true, false", hosts[2].OverridePath, hosts[3].OverridePath)
	}
	for i, h := range hosts {
		if h.Mirror != (i < len(hosts)-1) {
			t.Errorf("host %d %s: Mirror = %t", i, h.URL(), h.Mirror)
		}
	}
}

func TestNoServerIsRegistryItself(t *testing.T) {
	dir := t.TempDir()
	writeHosts(t, dir, "_default", `
[host."https://mirror.example.com"]
  capabilities = ["pull", "resolve"]
`)
	hosts, err := ConfigureHosts(dir)("quay.io")
	if err != nil {
		t.Fatal(err)
	}
	want := "https://mirror.example.com/v2 pull,resolve\nhttps://quay.io/v2 pull,resolve,push"
	if got := strings.Join(urls(hosts), "\n"); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestDirectoryLookupOrder(t *testing.T) {
	dir := t.TempDir()
	writeHosts(t, dir, "_default", `server = "https://default.example.com"`)
	writeHosts(t, dir, "reg.example.com:5000", `server = "https://colon.example.com"`)
	hf := ConfigureHosts(dir)
	check := func(registry, want string) {
		t.Helper()
		hosts, err := hf(registry)
		if err != nil {
			t.Fatal(err)
		}
		if got := hosts[len(hosts)-1].URL(); got != want {
			t.Errorf("%s: server %s, want %s", registry, got, want)
		}
	}
	check("reg.example.com:5000", "https://colon.example.com/v2")
	check("other.example.com", "https://default.example.com/v2")
	writeHosts(t, dir, "reg.example.com_5000_", `server = "https://underscore.example.com"`)
	check("reg.example.com:5000", "https://underscore.example.com/v2")
}

func TestLiveReread(t *testing.T) {
	dir := t.TempDir()
	hf := ConfigureHosts(dir)
	hosts, err := hf("registry.example.com")
	if err != nil || len(hosts) != 1 {
		t.Fatalf("before any file: %v, %v", urls(hosts), err)
	}
	writeHosts(t, dir, "registry.example.com", `
[host."https://mirror-a.example.com"]
  capabilities = ["pull"]
`)
	hosts, err = hf("registry.example.com")
	if err != nil || len(hosts) != 2 || hosts[0].Host != "mirror-a.example.com" {
		t.Fatalf("after writing: %v, %v", urls(hosts), err)
	}
	writeHosts(t, dir, "registry.example.com", `
[host."https://mirror-b.example.com"]
  capabilities = ["pull"]
`)
	hosts, err = hf("registry.example.com")
	if err != nil || hosts[0].Host != "mirror-b.example.com" {
		t.Fatalf("after editing: %v, %v", urls(hosts), err)
	}
}

func TestCapabilities(t *testing.T) {
	dir := t.TempDir()
	writeHosts(t, dir, "r.example.com", `
[host."https://none.example.com"]
  capabilities = []
[host."https://pull.example.com"]
  capabilities = ["PULL"]
`)
	hosts, err := ConfigureHosts(dir)("r.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if hosts[0].Capabilities != 0 || hosts[0].Capabilities.Has(CapPull) {
		t.Errorf("empty list: %s, want none", hosts[0].Capabilities)
	}
	if !hosts[1].Capabilities.Has(CapPull) || hosts[1].Capabilities.Has(CapPush) || hosts[1].Capabilities.Has(CapResolve) {
		t.Errorf("pull only: %s", hosts[1].Capabilities)
	}
}

func TestMalformedNamesFileAndLine(t *testing.T) {
	for _, tc := range []struct {
		name, content, want string
	}{
		{"syntax", "server = \"x\"\n[host.\"https://m\"\ncapabilities = [\"pull\"]\n", ":2: "},
		{"unknown key", "server = \"https://r\"\n\n[host.\"https://m\"]\n  capabilites = [\"pull\"]\n", `:4: unknown key "host.https://m.capabilites"`},
		{"unknown capability", "[host.\"https://m\"]\n  capabilities = [\"pull\", \"pul\"]\n", `:2: unknown capability "pul"`},
		{"wrong type", "skip_verify = \"yes\"\n", ":1: "},
		{"bad url", "\n\n[host.\"ftp://m\"]\n", `:3: host "ftp://m" is not an http or https URL`},
		{"bad server", "server = \"https://\"\n", `:1: host "https://" is not`},
		{"bad ca", "[host.\"https://m\"]\nca = [\"a\", 3]\n", ":2: ca: want a path"},
		{"bad client pair", "[host.\"https://m\"]\n\nclient = [[\"a\", \"b\", \"c\"]]\n", ":3: client: a pair is [cert, key]"},
		{"bad header", "[host.\"https://m\".header]\nx-a = 1\n", `:2: header "x-a"`},
		{"bad timeout", "dial_timeout = \"soon\"\n", `:1: dial_timeout "soon"`},
		{"bad proxy", "proxy = \"ftp://p\"\n", `:1: proxy "ftp://p"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := writeHosts(t, dir, "r.example.com", tc.content)
			_, err := ConfigureHosts(dir)("r.example.com")
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), f+tc.want) {
				t.Errorf("error %q does not contain %q", err, f+tc.want)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("error %v is not InvalidArgument", err)
			}
		})
	}
}

func TestRegistryHostEscape(t *testing.T) {
	for _, h := range []string{"", "..", "../etc", "a/b"} {
		if _, err := ConfigureHosts(t.TempDir())(h); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: got %v, want InvalidArgument", h, err)
		}
	}
}

func TestInlineAndDottedHosts(t *testing.T) {
	dir := t.TempDir()
	writeHosts(t, dir, "r.example.com", `
host."https://b.example.com".capabilities = ["pull"]
host."https://a.example.com" = { capabilities = ["pull", "resolve"], header = { x-a = "1" } }
`)
	hosts, err := ConfigureHosts(dir)("r.example.com")
	if err != nil {
		t.Fatal(err)
	}
	want := "https://b.example.com/v2 pull\nhttps://a.example.com/v2 pull,resolve\nhttps://r.example.com/v2 pull,resolve,push"
	if got := strings.Join(urls(hosts), "\n"); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if hosts[1].Header.Get("X-A") != "1" {
		t.Errorf("inline header: %v", hosts[1].Header)
	}
}

func TestHeaderIsCopyPerCall(t *testing.T) {
	dir := t.TempDir()
	writeHosts(t, dir, "r.example.com", "[header]\nx-a = \"1\"\n")
	hf := ConfigureHosts(dir)
	a, _ := hf("r.example.com")
	a[0].Header.Set("X-A", "changed")
	b, _ := hf("r.example.com")
	if got := b[0].Header.Get("X-A"); got != "1" {
		t.Errorf("header leaked between calls: %q", got)
	}
}
