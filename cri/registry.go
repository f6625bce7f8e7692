package cri

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/berth-dev/berth/pull"
	"github.com/berth-dev/berth/remotes/auth"
	"github.com/berth-dev/berth/remotes/hosts"
	"github.com/berth-dev/berth/remotes/registry"
	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// registries makes the registry clients of CRI pulls. Pulls without
// credentials in the request share one client, so tokens and connections
// are reused; a pull that brings credentials gets a client of its own, so
// its tokens serve no other pull. Hosts come from the hosts.toml files of
// the hosts directory, read at each pull.
type registries struct {
	hostsDir string
	// shared is made at the first pull: a node may never pull through
	// the CRI.
	shared func() *registry.Client
}

func newRegistries(hostsDir string) *registries {
	return &registries{
		hostsDir: hostsDir,
		shared: sync.OnceValue(func() *registry.Client {
			return registry.New(registry.WithHosts(hosts.ConfigureHosts(hostsDir)), registry.WithCredentials(nodeCredentials()))
		}),
	}
}

// nodeCredentials are the node's own: `berth login`, then root's docker
// config.json. A request's credentials come before them.
func nodeCredentials() auth.Credentials {
	return auth.Chain(auth.NewStore("").Lookup, auth.DockerConfig(""))
}

// resolver returns the client of a pull with the request's auth (nil or
// empty: none).
func (r *registries) resolver(a *runtime.AuthConfig) (pull.Resolver, error) {
	if a == nil || (a.Username == "" && a.Password == "" && a.Auth == "" && a.IdentityToken == "" && a.RegistryToken == "") {
		return r.shared(), nil
	}
	creds, err := requestCredentials(a)
	if err != nil {
		return nil, err
	}
	hf := hosts.ConfigureHosts(r.hostsDir)
	if a.RegistryToken != "" {
		hf = withBearer(hf, a.ServerAddress, a.RegistryToken)
	}
	return registry.New(registry.WithHosts(hf), registry.WithCredentials(auth.Chain(creds, nodeCredentials()))), nil
}

// requestCredentials turns a CRI AuthConfig into credentials, in
// containerd's order: username and password, else an identity token
// (exchanged for registry tokens), else auth (base64 "user:password").
// With a server address, they are given to that host only.
func requestCredentials(a *runtime.AuthConfig) (auth.Credentials, error) {
	var user, secret string
	switch {
	case a.Username != "":
		user, secret = a.Username, a.Password
	case a.IdentityToken != "":
		secret = a.IdentityToken
	case a.Auth != "":
		b, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return nil, fmt.Errorf("auth of the pull request is not base64: %w", errdefs.ErrInvalidArgument)
		}
		var ok bool
		if user, secret, ok = strings.Cut(string(b), ":"); !ok {
			return nil, fmt.Errorf("auth of the pull request is not user:password: %w", errdefs.ErrInvalidArgument)
		}
		secret = strings.Trim(secret, "\x00")
	}
	return func(host string) (string, string, error) {
		if secret == "" || !forServer(a.ServerAddress, host) {
			return "", "", nil
		}
		return user, secret, nil
	}, nil
}

// forServer reports whether credentials meant for server (a host, a URL,
// or "" for any) go to host.
func forServer(server, host string) bool {
	return server == "" || auth.NormalizeHost(server) == auth.NormalizeHost(host)
}

// withBearer sends token as the Authorization of every request to the
// hosts it is meant for (all, without a server address). A registry that refuses it answers 401 and the
// usual challenge takes over.
func withBearer(hf hosts.HostsFunc, server, token string) hosts.HostsFunc {
	return func(registryHost string) ([]hosts.Host, error) {
		hs, err := hf(registryHost)
		for i := range hs {
			if !forServer(server, hs[i].Host) {
				continue
			}
			h := hs[i].Header.Clone()
			if h == nil {
				h = http.Header{}
			}
			h.Set("Authorization", "Bearer "+token)
			hs[i].Header = h
		}
		return hs, err
	}
}
