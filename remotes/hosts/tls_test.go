package hosts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "berth test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns PEM cert and key for a server (127.0.0.1) or a client.
func (ca *testCA) issue(t *testing.T, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "berth test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// mtlsServer starts an https server whose certificate ca issued and which
// requires a client certificate from ca.
func mtlsServer(t *testing.T, ca *testCA) *httptest.Server {
	t.Helper()
	certPEM, keyPEM := ca.issue(t, true)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// get does a GET on the host's API root with its TLS config.
func get(h Host) error {
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: h.TLS}, Timeout: 5 * time.Second}
	resp, err := client.Get(h.URL())
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

func TestTLSCAAndClientPair(t *testing.T) {
	ca := newTestCA(t)
	srv := mtlsServer(t, ca)
	registry := strings.TrimPrefix(srv.URL, "https://")
	dir := t.TempDir()
	ns := filepath.Join(dir, "registry.example.com")
	if err := os.MkdirAll(filepath.Join(ns, "certs"), 0o755); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := ca.issue(t, false)
	writeFile(t, filepath.Join(ns, "certs", "ca.pem"), ca.pem)
	writeFile(t, filepath.Join(ns, "client.cert"), certPEM)
	writeFile(t, filepath.Join(ns, "client.key"), keyPEM)
	writeHosts(t, dir, "registry.example.com", `
[host."https://`+registry+`"]
  capabilities = ["pull"]
  ca = "certs/ca.pem"
  client = [["client.cert", "client.key"]]

[host."https://`+registry+`/nocert"]
  capabilities = ["pull"]
  ca = ["certs/ca.pem"]
`)
	hf := ConfigureHosts(dir)
	hosts, err := hf("registry.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := get(hosts[0]); err != nil {
		t.Errorf("with CA and client pair: %v", err)
	}
	if err := get(hosts[1]); err == nil {
		t.Error("without a client certificate: no error")
	}
	again, err := hf("registry.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if again[0].TLS != hosts[0].TLS {
		t.Error("unchanged files gave a new *tls.Config; transports could not be reused")
	}
	other := newTestCA(t)
	writeFile(t, filepath.Join(ns, "certs", "ca.pem"), other.pem)
	changed, err := hf("registry.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if changed[0].TLS == hosts[0].TLS {
		t.Error("an edited CA file gave the cached *tls.Config")
	}
	if err := get(changed[0]); err == nil {
		t.Error("with the wrong CA: no error")
	}
}

func TestTLSSkipVerifyAndSelfSigned(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	hostport := strings.TrimPrefix(srv.URL, "https://")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "self.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	ns := "r.example.com"
	writeHosts(t, dir, ns, `
[host."https://`+hostport+`"]
  skip_verify = true
[host."https://`+hostport+`/ca"]
  ca = "`+filepath.Join(dir, "self.crt")+`"
[host."https://`+hostport+`/none"]
`)
	hosts, err := ConfigureHosts(dir)(ns)
	if err != nil {
		t.Fatal(err)
	}
	if err := get(hosts[0]); err != nil {
		t.Errorf("skip_verify: %v", err)
	}
	if err := get(hosts[1]); err != nil {
		t.Errorf("absolute ca: %v", err)
	}
	if hosts[2].TLS != nil {
		t.Errorf("no TLS keys gave a TLS config")
	}
	if err := get(hosts[2]); err == nil {
		t.Error("self-signed without ca: no error")
	}
}

func TestHTTPWithTLSKeysTriesHTTPSFirst(t *testing.T) {
	dir := t.TempDir()
	writeHosts(t, dir, "r.example.com", `
[host."http://m.example.com:5000"]
  skip_verify = true
[host."http://m.example.com:80"]
  skip_verify = true
[host."http://m.example.com:5001"]
`)
	hosts, err := ConfigureHosts(dir)("r.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if h := hosts[0]; h.Scheme != "https" || !h.HTTPFallback {
		t.Errorf("http with skip_verify: %s fallback=%t, want https with fallback", h.URL(), h.HTTPFallback)
	}
	if h := hosts[1]; h.Scheme != "http" || h.HTTPFallback {
		t.Errorf("http on port 80: %s fallback=%t, want plain http", h.URL(), h.HTTPFallback)
	}
	if h := hosts[2]; h.Scheme != "http" || h.HTTPFallback {
		t.Errorf("http without TLS keys: %s fallback=%t, want plain http", h.URL(), h.HTTPFallback)
	}
}

func TestDockerCertFiles(t *testing.T) {
	ca := newTestCA(t)
	srv := mtlsServer(t, ca)
	registry := strings.TrimPrefix(srv.URL, "https://")
	dir := t.TempDir()
	ns := filepath.Join(dir, strings.ReplaceAll(registry, ":", "_")+"_")
	if err := os.MkdirAll(ns, 0o755); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := ca.issue(t, false)
	writeFile(t, filepath.Join(ns, "ca.crt"), ca.pem)
	writeFile(t, filepath.Join(ns, "client.cert"), certPEM)
	writeFile(t, filepath.Join(ns, "client.key"), keyPEM)
	hosts, err := ConfigureHosts(dir)(registry)
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 1 || hosts[0].Host != registry || hosts[0].Scheme != "https" {
		t.Fatalf("got %v", urls(hosts))
	}
	if err := get(hosts[0]); err != nil {
		t.Errorf("docker cert files: %v", err)
	}
}

func TestBadTLSFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "junk.pem"), []byte("not a certificate"))
	writeHosts(t, dir, "a.example.com", `ca = "../junk.pem"`)
	writeHosts(t, dir, "b.example.com", `ca = "missing.pem"`)
	writeHosts(t, dir, "c.example.com", `client = "../junk.pem"`)
	hf := ConfigureHosts(dir)
	for ns, want := range map[string]string{
		"a.example.com": "no PEM certificate",
		"b.example.com": "missing.pem",
		"c.example.com": "client certificate",
	} {
		if _, err := hf(ns); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error with %q", ns, err, want)
		}
	}
}
