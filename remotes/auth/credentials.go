package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
)

// Credentials returns the user name and secret to present to host (the
// host[:port] being contacted). An empty user with a secret means the
// secret is an identity token (an OAuth2 refresh token, docker's
// "identitytoken"). No credentials is "", "", nil.
type Credentials func(host string) (user, secret string, err error)

// Chain asks each provider in turn; the first with a secret wins.
func Chain(providers ...Credentials) Credentials {
	return func(host string) (string, string, error) {
		for _, p := range providers {
			if p == nil {
				continue
			}
			user, secret, err := p(host)
			if err != nil {
				return "", "", err
			}
			if secret != "" {
				return user, secret, nil
			}
		}
		return "", "", nil
	}
}

// Static returns user and secret for host and nothing for other hosts.
func Static(host, user, secret string) Credentials {
	want := NormalizeHost(host)
	return func(h string) (string, string, error) {
		if NormalizeHost(h) == want {
			return user, secret, nil
		}
		return "", "", nil
	}
}

// dockerHubAliases are the names Docker Hub's credentials are stored and
// asked under.
var dockerHubAliases = map[string]bool{
	"docker.io": true, "index.docker.io": true, "registry-1.docker.io": true,
	"registry.hub.docker.com": true,
}

// NormalizeHost reduces a credentials key to host[:port]: it drops the
// scheme and path docker writes ("https://index.docker.io/v1/"), lowers
// the case, and folds Docker Hub's aliases into "docker.io".
func NormalizeHost(key string) string {
	key = strings.ToLower(strings.TrimSpace(key))
	if i := strings.Index(key, "://"); i >= 0 {
		key = key[i+3:]
	}
	if i := strings.IndexByte(key, '/'); i >= 0 {
		key = key[:i]
	}
	if dockerHubAliases[key] {
		return "docker.io"
	}
	return key
}

// authEntry is one entry of the "auths" map of docker's config.json,
// which berth's own store shares.
type authEntry struct {
	Auth          string `json:"auth,omitempty"`
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
}

// credentials decodes an entry: identitytoken first, then auth
// (base64 "user:password"), then username and password.
func (e authEntry) credentials() (user, secret string, err error) {
	if e.IdentityToken != "" {
		return "", e.IdentityToken, nil
	}
	if e.Auth != "" {
		b, err := base64.StdEncoding.DecodeString(e.Auth)
		if err != nil {
			return "", "", fmt.Errorf("auth is not base64: %w", errdefs.ErrInvalidArgument)
		}
		u, p, ok := strings.Cut(string(b), ":")
		if !ok {
			return "", "", fmt.Errorf("auth is not user:password: %w", errdefs.ErrInvalidArgument)
		}
		return u, p, nil
	}
	return e.Username, e.Password, nil
}

// lookup finds host's entry among auths, whatever form its key takes.
func lookup(auths map[string]authEntry, host string) (authEntry, bool) {
	want := NormalizeHost(host)
	if e, ok := auths[want]; ok {
		return e, true
	}
	for k, e := range auths {
		if NormalizeHost(k) == want {
			return e, true
		}
	}
	return authEntry{}, false
}

// DockerConfigPath is where docker keeps config.json: $DOCKER_CONFIG, else
// ~/.docker.
func DockerConfigPath() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".docker", "config.json")
}

// DockerConfig reads credentials from a docker config.json at path (""
// means DockerConfigPath) at each call. A missing file holds no
// credentials. Credential helpers (credsStore, credHelpers) are not run.
func DockerConfig(path string) Credentials {
	return func(host string) (string, string, error) {
		p := path
		if p == "" {
			p = DockerConfigPath()
		}
		if p == "" {
			return "", "", nil
		}
		var cfg struct {
			Auths map[string]authEntry `json:"auths"`
		}
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			return "", "", nil
		}
		if err != nil {
			return "", "", fmt.Errorf("docker config: %w", err)
		}
		if err := json.Unmarshal(b, &cfg); err != nil {
			return "", "", fmt.Errorf("docker config %s: %v: %w", p, err, errdefs.ErrInvalidArgument)
		}
		e, ok := lookup(cfg.Auths, host)
		if !ok {
			return "", "", nil
		}
		user, secret, err := e.credentials()
		if err != nil {
			return "", "", fmt.Errorf("docker config %s: credentials for %s: %w", p, host, err)
		}
		return user, secret, nil
	}
}
