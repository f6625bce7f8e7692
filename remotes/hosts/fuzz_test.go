package hosts

import (
	"strings"
	"testing"
)

// FuzzParseHostsTOML checks that no hosts.toml, however broken, panics the
// parser, and that what parses names its hosts well.
func FuzzParseHostsTOML(f *testing.F) {
	for _, seed := range []string{
		"",
		`server = "https://registry-1.docker.io"`,
		"server = \"https://r\"\n[host.\"https://m\"]\n  capabilities = [\"pull\"]\n  ca = [\"a.pem\"]\n  client = [[\"c\", \"k\"], \"p\"]\n  skip_verify = true\n  override_path = true\n  dial_timeout = \"1s\"\n  [host.\"https://m\".header]\n    x = [\"1\", \"2\"]\n",
		"host.\"h\" = { capabilities = [\"pull\"] }\n",
		"[host.\"http://[::1]:5000/v2/x\"]\nproxy = \"socks5://p:1\"\n",
		"[[host]]\nx = 1\n",
		"header = { a = 1 }",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		configs, err := parseFile("/etc/berth/certs.d/r/hosts.toml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "/etc/berth/certs.d/r/hosts.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if len(configs) == 0 || !configs[len(configs)-1].server {
			t.Fatalf("no server entry last: %+v", configs)
		}
		for _, c := range configs {
			if c.host != "" && c.scheme != "http" && c.scheme != "https" {
				t.Fatalf("host %q with scheme %q", c.host, c.scheme)
			}
		}
	})
}
