package hosts

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"

	"github.com/containerd/errdefs"
)

// maxCachedTLS bounds the TLS cache; past it the cache starts afresh.
const maxCachedTLS = 64

// tlsCache shares one *tls.Config between calls for the same TLS
// material, so that callers keep their connections (and pools) across
// calls while the files are unchanged. Keys hash the files' contents,
// not their names: an edited CA file gives a new config.
type tlsCache struct {
	mu      sync.Mutex
	configs map[[sha256.Size]byte]*tls.Config
}

func newTLSCache() *tlsCache {
	return &tlsCache{configs: map[[sha256.Size]byte]*tls.Config{}}
}

// tlsFiles is the TLS material of one host, read from disk.
type tlsFiles struct {
	skipVerify bool
	cas        [][]byte
	pairs      [][2][]byte
}

// get returns the TLS config of c, reading its files now.
func (tc *tlsCache) get(c *hostConfig) (*tls.Config, error) {
	files, err := readTLSFiles(c)
	if err != nil {
		return nil, err
	}
	key := files.key()
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if cfg, ok := tc.configs[key]; ok {
		return cfg, nil
	}
	cfg, err := files.config(c)
	if err != nil {
		return nil, err
	}
	if len(tc.configs) >= maxCachedTLS {
		clear(tc.configs)
	}
	tc.configs[key] = cfg
	return cfg, nil
}

func readTLSFiles(c *hostConfig) (tlsFiles, error) {
	f := tlsFiles{skipVerify: c.skipVerify != nil && *c.skipVerify}
	for _, ca := range c.ca {
		b, err := os.ReadFile(ca)
		if err != nil {
			return f, fmt.Errorf("host %s: ca: %w", c.host, err)
		}
		f.cas = append(f.cas, b)
	}
	for _, pair := range c.client {
		cert, err := os.ReadFile(pair[0])
		if err != nil {
			return f, fmt.Errorf("host %s: client certificate: %w", c.host, err)
		}
		key := cert
		if pair[1] != "" {
			if key, err = os.ReadFile(pair[1]); err != nil {
				return f, fmt.Errorf("host %s: client key: %w", c.host, err)
			}
		}
		f.pairs = append(f.pairs, [2][]byte{cert, key})
	}
	return f, nil
}

func (f tlsFiles) key() [sha256.Size]byte {
	h := sha256.New()
	fmt.Fprintf(h, "skip=%t\n", f.skipVerify)
	for _, ca := range f.cas {
		fmt.Fprintf(h, "ca %d\n", len(ca))
		h.Write(ca)
	}
	for _, p := range f.pairs {
		fmt.Fprintf(h, "pair %d %d\n", len(p[0]), len(p[1]))
		h.Write(p[0])
		h.Write(p[1])
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// config builds the tls.Config: the system roots plus the CAs, the
// client certificates, and skip_verify.
func (f tlsFiles) config(c *hostConfig) (*tls.Config, error) {
	cfg := &tls.Config{InsecureSkipVerify: f.skipVerify, MinVersion: tls.VersionTLS12}
	if len(f.cas) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		for i, ca := range f.cas {
			if !pool.AppendCertsFromPEM(ca) {
				return nil, fmt.Errorf("host %s: ca %s: no PEM certificate: %w", c.host, c.ca[i], errdefs.ErrInvalidArgument)
			}
		}
		cfg.RootCAs = pool
	}
	for i, p := range f.pairs {
		cert, err := tls.X509KeyPair(p[0], p[1])
		if err != nil {
			return nil, fmt.Errorf("host %s: client certificate %s: %v: %w", c.host, c.client[i][0], err, errdefs.ErrInvalidArgument)
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}
	return cfg, nil
}
