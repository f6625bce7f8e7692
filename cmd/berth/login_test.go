package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runBerth runs the CLI in this process, as the user would.
func runBerth(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = execute(context.Background(), args, strings.NewReader(stdin), &out, &errOut, os.Getenv)
	return out.String(), errOut.String(), code
}

func TestLoginLogout(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("BERTH_CONFIG_DIR", dir)
	file := filepath.Join(dir, "auth.json")

	stdout, stderr, code := runBerth(t, "s3cret\n", "login", "--username", "alice", "--password-stdin", "Registry.Example.com:5000")
	if code != 0 || !strings.Contains(stdout, "registry.example.com:5000") || stderr != "" {
		t.Fatalf("login: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v, mode %v; want 0600", err, fi.Mode())
	}
	var doc struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	b, _ := os.ReadFile(file)
	if err := json.Unmarshal(b, &doc); err != nil || doc.Auths["registry.example.com:5000"].Auth != "YWxpY2U6czNjcmV0" {
		t.Errorf("credentials file (%v):\n%s", err, b) // base64("alice:s3cret")
	}

	// --password works, with a warning.
	_, stderr, code = runBerth(t, "", "login", "-u", "bob", "-p", "pw", "other.example.com")
	if code != 0 || !strings.Contains(stderr, "--password-stdin") {
		t.Errorf("login --password: exit %d, stderr %q", code, stderr)
	}

	stdout, _, code = runBerth(t, "", "logout", "registry.example.com:5000")
	if code != 0 || !strings.Contains(stdout, "Removed") {
		t.Errorf("logout: exit %d, stdout %q", code, stdout)
	}
	if b, _ := os.ReadFile(file); strings.Contains(string(b), "registry.example.com") || !strings.Contains(string(b), "other.example.com") {
		t.Errorf("after logout:\n%s", b)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file after logout: %v, %v", err, fi.Mode())
	}
	stdout, _, code = runBerth(t, "", "logout", "registry.example.com:5000")
	if code != 0 || !strings.Contains(stdout, "Not logged in") {
		t.Errorf("second logout: exit %d, stdout %q", code, stdout)
	}
}

func TestLoginRefusals(t *testing.T) {
	t.Setenv("BERTH_CONFIG_DIR", t.TempDir())
	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"pw\n", []string{"login", "--password-stdin", "r.example.com"}, "--password-stdin needs --username"},
		{"", []string{"login", "-u", "a", "--password-stdin", "r.example.com"}, "standard input is empty"},
		{"", []string{"login", "-u", "a", "-p", "x", "--password-stdin", "r.example.com"}, "exclude each other"},
		{"", []string{"login", "-u", "a", "r.example.com"}, "run on a terminal"}, // stdin is no terminal
	} {
		_, stderr, code := runBerth(t, tc.stdin, tc.args...)
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q, want %q", tc.args, code, stderr, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(os.Getenv("BERTH_CONFIG_DIR"), "auth.json")); !os.IsNotExist(err) {
		t.Errorf("a refused login wrote the credentials file: %v", err)
	}
}
