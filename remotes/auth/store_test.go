package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
)

func TestStoreRoundTrip(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("BERTH_CONFIG_DIR", filepath.Join(dir, "conf"))
	s := NewStore("")
	if s.Path() != filepath.Join(dir, "conf", "auth.json") {
		t.Fatalf("path %s", s.Path())
	}
	if u, p, err := s.Lookup("reg.example.com"); err != nil || u != "" || p != "" {
		t.Fatalf("empty store: %q %q %v", u, p, err)
	}
	if err := s.Store("reg.example.com:5000", "alice", "pw:with:colons"); err != nil {
		t.Fatal(err)
	}
	if err := s.Store("https://index.docker.io/v1/", "bob", "hub"); err != nil {
		t.Fatal(err)
	}
	if err := s.Store("ghcr.io", "", "identity"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.Path())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, %v; want 0600", fi.Mode(), err)
	}
	for host, want := range map[string][2]string{
		"reg.example.com:5000": {"alice", "pw:with:colons"},
		"docker.io":            {"bob", "hub"},
		"registry-1.docker.io": {"bob", "hub"},
		"ghcr.io":              {"", "identity"},
	} {
		u, p, err := s.Lookup(host)
		if err != nil || u != want[0] || p != want[1] {
			t.Errorf("%s: %q %q %v, want %q %q", host, u, p, err, want[0], want[1])
		}
	}
	if err := s.Erase("index.docker.io"); err != nil {
		t.Fatal(err)
	}
	if _, p, _ := s.Lookup("docker.io"); p != "" {
		t.Error("erased credentials still found")
	}
	if err := s.Erase("docker.io"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("second erase: %v, want NotFound", err)
	}
	if err := s.Store("", "a", "b"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("empty host: %v", err)
	}
}

func TestStoreKeepsOtherKeysAndDefaultPath(t *testing.T) {
	t.Setenv("BERTH_CONFIG_DIR", "")
	if got := NewStore("").Path(); got != "/etc/berth/auth.json" {
		t.Errorf("default path %s", got)
	}
	path := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(path, []byte(`{"credHelpers":{"x":"y"},"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := NewStore(path).Store("r", "u", "p"); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		CredHelpers map[string]string `json:"credHelpers"`
	}
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &doc); err != nil || doc.CredHelpers["x"] != "y" {
		t.Errorf("other keys lost: %s", b)
	}
}

func TestStoreConcurrentWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.json")
	var wg sync.WaitGroup
	hosts := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	for _, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := NewStore(path).Store(h+".example.com", "u", h); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, h := range hosts {
		if _, p, err := NewStore(path).Lookup(h + ".example.com"); err != nil || p != h {
			t.Errorf("%s: lost (%q, %v)", h, p, err)
		}
	}
}

func TestDockerConfig(t *testing.T) {
	dir := t.TempDir()
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	cfg := `{"auths":{
		"https://index.docker.io/v1/":{"auth":"` + enc("hubuser:hubpw") + `"},
		"http://reg.example.com:5000":{"username":"u2","password":"p2"},
		"quay.io":{"auth":"` + enc("ignored:x") + `","identitytoken":"idtok"},
		"bad.example.com":{"auth":"!!"}
	}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	creds := DockerConfig("")
	for host, want := range map[string][2]string{
		"registry-1.docker.io": {"hubuser", "hubpw"},
		"docker.io":            {"hubuser", "hubpw"},
		"reg.example.com:5000": {"u2", "p2"},
		"quay.io":              {"", "idtok"},
		"unknown.example.com":  {"", ""},
	} {
		u, p, err := creds(host)
		if err != nil || u != want[0] || p != want[1] {
			t.Errorf("%s: %q %q %v, want %q %q", host, u, p, err, want[0], want[1])
		}
	}
	if _, _, err := creds("bad.example.com"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad auth: %v", err)
	}
	if _, p, err := DockerConfig(filepath.Join(dir, "missing.json"))("docker.io"); err != nil || p != "" {
		t.Errorf("missing file: %q %v", p, err)
	}
}

func TestChain(t *testing.T) {
	first := Static("a", "u1", "p1")
	second := Static("b", "u2", "p2")
	c := Chain(nil, first, second)
	if u, _, _ := c("b"); u != "u2" {
		t.Errorf("chain fell through to %q", u)
	}
	if u, _, _ := c("a"); u != "u1" {
		t.Errorf("chain order: %q", u)
	}
	broken := func(string) (string, string, error) { return "", "", errors.New("boom") }
	if _, _, err := Chain(broken, first)("a"); err == nil {
		t.Error("provider error swallowed")
	}
}
