package cri

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/remotes/hosts"
	"github.com/berth-dev/berth/runtime/handler"
	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestRequestCredentials(t *testing.T) {
	basic := base64.StdEncoding.EncodeToString([]byte("ann:pw:with:colons\x00"))
	for _, tc := range []struct {
		name             string
		auth             *runtime.AuthConfig
		host             string
		wantUser, wantPW string
	}{
		{"username", &runtime.AuthConfig{Username: "ann", Password: "pw"}, "any.example", "ann", "pw"},
		{"username first", &runtime.AuthConfig{Username: "ann", Password: "pw", IdentityToken: "tok", Auth: basic}, "x", "ann", "pw"},
		{"identity token", &runtime.AuthConfig{IdentityToken: "refresh"}, "x", "", "refresh"},
		{"auth", &runtime.AuthConfig{Auth: basic}, "x", "ann", "pw:with:colons"},
		{"server matches", &runtime.AuthConfig{Username: "ann", Password: "pw", ServerAddress: "https://Registry.example:5000/v2/"}, "registry.example:5000", "ann", "pw"},
		{"other server", &runtime.AuthConfig{Username: "ann", Password: "pw", ServerAddress: "registry.example"}, "mirror.example", "", ""},
		{"docker hub alias", &runtime.AuthConfig{Username: "ann", Password: "pw", ServerAddress: "https://index.docker.io/v1/"}, "docker.io", "ann", "pw"},
	} {
		creds, err := requestCredentials(tc.auth)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		user, pw, err := creds(tc.host)
		if err != nil || user != tc.wantUser || pw != tc.wantPW {
			t.Errorf("%s: credentials for %s = %q, %q, %v; want %q, %q", tc.name, tc.host, user, pw, err, tc.wantUser, tc.wantPW)
		}
	}
	for _, bad := range []string{"%%%", base64.StdEncoding.EncodeToString([]byte("no colon"))} {
		if _, err := requestCredentials(&runtime.AuthConfig{Auth: bad}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("auth %q: %v, want InvalidArgument", bad, err)
		}
	}
}

func TestWithBearer(t *testing.T) {
	base := func(string) ([]hosts.Host, error) {
		return []hosts.Host{
			{Host: "mirror.example", Header: http.Header{"X-Keep": {"1"}}},
			{Host: "registry.example"},
		}, nil
	}
	hs, err := withBearer(base, "registry.example", "tok")("registry.example")
	if err != nil {
		t.Fatal(err)
	}
	if got := hs[0].Header.Get("Authorization"); got != "" || hs[0].Header.Get("X-Keep") != "1" {
		t.Errorf("mirror headers: %v", hs[0].Header)
	}
	if got := hs[1].Header.Get("Authorization"); got != "Bearer tok" {
		t.Errorf("registry Authorization %q", got)
	}
	hs, _ = withBearer(base, "", "tok")("registry.example")
	if hs[0].Header.Get("Authorization") != "Bearer tok" || hs[0].Header.Get("X-Keep") != "1" {
		t.Errorf("without a server address every host gets the token: %v", hs[0].Header)
	}
	if h, _ := base(""); h[0].Header.Get("Authorization") != "" {
		t.Error("the hosts' own headers were changed")
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

const bridgeConflist = `{"cniVersion": "1.0.0", "name": "%s", "plugins": [{"type": "bridge"}, {"type": "portmap"}]}`

func TestLoadCNINetworks(t *testing.T) {
	dir := t.TempDir()
	cfg := CNIConfig{ConfDir: filepath.Join(dir, "missing"), MaxConfNum: 1}
	if _, err := loadCNINetworks(cfg); err == nil || !strings.Contains(err.Error(), cfg.ConfDir) {
		t.Errorf("missing conf dir: %v, want an error naming it", err)
	}
	cfg.ConfDir = dir
	writeFile(t, filepath.Join(dir, "README"), "not a config")
	if _, err := loadCNINetworks(cfg); err == nil || !strings.Contains(err.Error(), "no network config found in "+dir) {
		t.Errorf("conf dir without configs: %v", err)
	}
	writeFile(t, filepath.Join(dir, "20-second.conflist"), strings.Replace(bridgeConflist, "%s", "second", 1))
	writeFile(t, filepath.Join(dir, "30-single.conf"), `{"cniVersion": "0.4.0", "name": "single", "type": "bridge"}`)
	names, err := loadCNINetworks(cfg)
	if err != nil || strings.Join(names, ",") != "second" {
		t.Errorf("max_conf_num 1: %v, %v", names, err)
	}
	cfg.MaxConfNum = 0
	if names, err = loadCNINetworks(cfg); err != nil || strings.Join(names, ",") != "second,single" {
		t.Errorf("max_conf_num 0 (all): %v, %v", names, err)
	}
	bad := filepath.Join(dir, "10-broken.conflist")
	writeFile(t, bad, `{"name": "broken", "plugins": [`)
	if _, err := loadCNINetworks(cfg); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("malformed file first: %v, want an error naming %s", err, bad)
	}
}

func newTestService(t *testing.T, cfg Config) *Service {
	t.Helper()
	s, err := New(cfg, Deps{SnapshotterRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStatus(t *testing.T) {
	cfg := DefaultConfig()
	cfg.CNI.ConfDir = t.TempDir()
	cfg.Containerd.Runtimes = map[string]*handler.Handler{"kata": {RuntimeType: "io.containerd.kata.v2"}}
	r := &runtimeService{s: newTestService(t, cfg)}
	resp, err := r.Status(context.Background(), &runtime.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	conds := map[string]*runtime.RuntimeCondition{}
	for _, c := range resp.GetStatus().GetConditions() {
		conds[c.GetType()] = c
	}
	if !conds[runtime.RuntimeReady].GetStatus() {
		t.Errorf("RuntimeReady: %v", conds[runtime.RuntimeReady])
	}
	net := conds[runtime.NetworkReady]
	if net.GetStatus() || net.GetReason() != "NetworkPluginNotReady" || !strings.Contains(net.GetMessage(), cfg.CNI.ConfDir) {
		t.Errorf("NetworkReady without a config: %v", net)
	}
	var names []string
	for _, h := range resp.GetRuntimeHandlers() {
		names = append(names, h.GetName())
	}
	if got := strings.Join(names, ","); got != ",crun,kata,runc,runsc" {
		t.Errorf("runtime handlers %q", got)
	}
	var info struct {
		SandboxImage string `json:"sandboxImage"`
		Containerd   struct {
			DefaultRuntimeName string                 `json:"defaultRuntimeName"`
			Runtimes           map[string]runtimeInfo `json:"runtimes"`
		} `json:"containerd"`
	}
	if err := json.Unmarshal([]byte(resp.GetInfo()["config"]), &info); err != nil {
		t.Fatalf("config info %q: %v", resp.GetInfo()["config"], err)
	}
	if info.SandboxImage != cfg.SandboxImage || info.Containerd.DefaultRuntimeName != "runc" ||
		info.Containerd.Runtimes["kata"].RuntimeType != "io.containerd.kata.v2" || len(info.Containerd.Runtimes) != 4 {
		t.Errorf("config info: %+v", info)
	}

	writeFile(t, filepath.Join(cfg.CNI.ConfDir, "10-net.conflist"), strings.Replace(bridgeConflist, "%s", "net", 1))
	resp, _ = r.Status(context.Background(), &runtime.StatusRequest{})
	for _, c := range resp.GetStatus().GetConditions() {
		if !c.GetStatus() {
			t.Errorf("with a CNI config: %v", c)
		}
	}
	if resp.GetInfo() != nil {
		t.Errorf("info without verbose: %v", resp.GetInfo())
	}
}

func TestRuntimeConfigCgroupDriver(t *testing.T) {
	for _, tc := range []struct {
		runtimes map[string]*handler.Handler
		def      string
		want     runtime.CgroupDriver
	}{
		{nil, "runc", runtime.CgroupDriver_CGROUPFS},
		{map[string]*handler.Handler{"runc": {RuntimeType: handler.RuncV2, Options: map[string]any{"SystemdCgroup": true}}}, "runc", runtime.CgroupDriver_SYSTEMD},
		{map[string]*handler.Handler{"runc": {RuntimeType: handler.RuncV2, Options: map[string]any{"SystemdCgroup": true}}}, "crun", runtime.CgroupDriver_CGROUPFS},
		{map[string]*handler.Handler{"sd": {RuntimeType: handler.RuncV2, Options: map[string]any{"SystemdCgroup": true}}}, "sd", runtime.CgroupDriver_SYSTEMD},
	} {
		cfg := DefaultConfig()
		cfg.Containerd = handler.Config{DefaultRuntimeName: tc.def, Runtimes: tc.runtimes}
		r := &runtimeService{s: newTestService(t, cfg)}
		resp, err := r.RuntimeConfig(context.Background(), &runtime.RuntimeConfigRequest{})
		if err != nil || resp.GetLinux().GetCgroupDriver() != tc.want {
			t.Errorf("default %q: %v, %v; want %v", tc.def, resp, err, tc.want)
		}
	}
}

func TestUpdateRuntimeConfig(t *testing.T) {
	s := newTestService(t, DefaultConfig())
	r := &runtimeService{s: s}
	for _, cidr := range []string{"10.88.0.0/16", ""} {
		req := &runtime.UpdateRuntimeConfigRequest{RuntimeConfig: &runtime.RuntimeConfig{NetworkConfig: &runtime.NetworkConfig{PodCidr: cidr}}}
		if _, err := r.UpdateRuntimeConfig(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.PodCIDR(); got != "10.88.0.0/16" {
		t.Errorf("PodCIDR() = %q; an empty one must not replace it", got)
	}
}

func TestMeasure(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a", "file"), strings.Repeat("x", 10000))
	if err := os.Link(filepath.Join(dir, "a", "file"), filepath.Join(dir, "hardlink")); err != nil {
		t.Fatal(err)
	}
	u, err := measure(dir)
	if err != nil {
		t.Fatal(err)
	}
	// dir, a, file (once, though linked twice)
	if u.inodes != 3 || u.bytes < 10000 || u.at.IsZero() {
		t.Errorf("usage %+v, want 3 inodes and at least 10000 bytes", u)
	}
	if _, err := measure(filepath.Join(dir, "missing")); err == nil {
		t.Error("usage of a missing directory: no error")
	}
}

func TestNewRejectsBadHandlers(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Containerd.DefaultRuntimeName = "nope"
	if _, err := New(cfg, Deps{}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("New with an unknown default handler: %v", err)
	}
}

func TestDirUsageCache(t *testing.T) {
	dir := t.TempDir()
	u := newDirUsage(dir)
	first, err := u.get()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "new"), "x")
	if again, _ := u.get(); again != first {
		t.Errorf("within usageMaxAge: %+v, want the cached %+v", again, first)
	}
	u.invalidate()
	if fresh, _ := u.get(); fresh.inodes != first.inodes+1 {
		t.Errorf("after invalidate: %+v, want one inode more than %+v", fresh, first)
	}
}
