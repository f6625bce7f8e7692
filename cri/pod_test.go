package cri

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/cri/imagestore"
	"github.com/berth-dev/berth/oci"
	"github.com/berth-dev/berth/runtime/handler"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var criLine = regexp.MustCompile(`^(\S+) (stdout|stderr) ([FP]) (.*)$`)

// readLog parses a CRI log file into "stream tag content" records.
func readLog(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		m := criLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("line %q is not in the CRI format", line)
		}
		if _, err := time.Parse(time.RFC3339Nano, m[1]); err != nil {
			t.Errorf("line %q: %v", line, err)
		}
		out = append(out, m[2]+" "+m[3]+" "+m[4])
	}
	return out
}

func TestLogWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pod", "c", "0.log")
	w, err := openLog(path, 8)
	if err != nil {
		t.Fatal(err)
	}
	w.copyStream(streamStdout, strings.NewReader("one\n\n0123456789abcdefXYZ\nexactly8\nno newline"))
	w.copyStream(streamStderr, strings.NewReader("err\n"))
	// "no newline" is 10 bytes: a part of 8, then the rest at EOF.
	want := []string{
		"stdout F one", "stdout F ", "stdout P 01234567", "stdout P 89abcdef", "stdout F XYZ",
		"stdout F exactly8", "stdout P no newli", "stdout F ne", "stderr F err",
	}
	if got := readLog(t, path); !slices.Equal(got, want) {
		t.Errorf("log:\n%q\nwant\n%q", got, want)
	}

	// The kubelet moves the file away; reopen starts a new one.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := w.reopen(); err != nil {
		t.Fatal(err)
	}
	w.copyStream(streamStdout, strings.NewReader("after\n"))
	w.close()
	if got := readLog(t, path); !slices.Equal(got, []string{"stdout F after"}) {
		t.Errorf("log after reopen: %q", got)
	}

	unlimited, err := openLog(filepath.Join(t.TempDir(), "u.log"), 0)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 200<<10)
	unlimited.copyStream(streamStdout, strings.NewReader(long+"\n"))
	unlimited.close()
	if got := readLog(t, unlimited.path); len(got) != 1 || got[0] != "stdout F "+long {
		t.Errorf("a 200 KiB line without a limit became %d records", len(got))
	}
}

// TestLoggerURI: the shim passes the query keys, sorted, as arguments;
// the logger mode's flag must come first.
func TestLoggerURI(t *testing.T) {
	uri := loggerURI("/usr/bin/berthd", "/var/log/pods/ns_p_u/c/0.log", "/run/berth/x/logger.pid", 16384)
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "binary" || u.Path != "/usr/bin/berthd" {
		t.Fatalf("uri %q: %v", uri, err)
	}
	q := u.Query()
	var args []string
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		args = append(args, k)
		if v := q.Get(k); v != "" {
			args = append(args, v)
		}
	}
	want := []string{LoggerFlag, "max-line", "16384", "path", "/var/log/pods/ns_p_u/c/0.log", "pidfile", "/run/berth/x/logger.pid"}
	if !slices.Equal(args, want) {
		t.Errorf("logger arguments %q, want %q", args, want)
	}
}

func TestCRISignal(t *testing.T) {
	if got := criSignal(syscall.SIGUSR1); got != runtime.Signal_SIGNAL_SIGUSR1 {
		t.Errorf("criSignal(SIGUSR1) = %v", got)
	}
}

func TestIndex(t *testing.T) {
	x := newIndex[string]("pod sandbox")
	x.add("abc123", "one")
	x.add("abd456", "two")
	if v, err := x.get("abc"); err != nil || v != "one" {
		t.Errorf("unique prefix: %q, %v", v, err)
	}
	if _, err := x.get("ab"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ambiguous prefix: %v", err)
	}
	if _, err := x.get("zz"); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), `pod sandbox "zz"`) {
		t.Errorf("missing: %v", err)
	}
	if err := x.reserve("name", "abc123"); err != nil {
		t.Fatal(err)
	}
	if err := x.reserve("name", "abd456"); !errdefs.IsAlreadyExists(err) || !strings.Contains(err.Error(), "abc123") {
		t.Errorf("second reservation: %v", err)
	}
	x.release("name")
	if err := x.reserve("name", "abd456"); err != nil {
		t.Errorf("reservation after release: %v", err)
	}
}

func TestResolvConf(t *testing.T) {
	got, err := resolvConf(&runtime.DNSConfig{Servers: []string{"10.0.0.10", "10.0.0.11"}, Searches: []string{"ns.svc.cluster.local", "svc.cluster.local"}, Options: []string{"ndots:5"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.0.0.10\nnameserver 10.0.0.11\noptions ndots:5\n"
	if string(got) != want {
		t.Errorf("resolv.conf:\n%s\nwant\n%s", got, want)
	}
	old := hostResolvConf
	defer func() { hostResolvConf = old }()
	hostResolvConf = filepath.Join(t.TempDir(), "resolv.conf")
	writeFile(t, hostResolvConf, "nameserver 192.0.2.1\n")
	if got, err := resolvConf(nil); err != nil || string(got) != "nameserver 192.0.2.1\n" {
		t.Errorf("without a DNS config: %q, %v", got, err)
	}
}

func TestCheckPropagation(t *testing.T) {
	old := mountInfoPath
	defer func() { mountInfoPath = old }()
	mountInfoPath = filepath.Join(t.TempDir(), "mountinfo")
	writeFile(t, mountInfoPath, `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:25 / /mnt/private rw - tmpfs tmpfs rw
31 22 0:26 / /mnt/slave rw master:3 - tmpfs tmpfs rw
32 22 0:27 / /mnt/with\040space rw shared:9 - tmpfs tmpfs rw
`)
	for _, tc := range []struct {
		path   string
		shared bool
		ok     bool
	}{
		{"/var/lib/x", true, true},
		{"/mnt/private/dir", false, false},
		{"/mnt/private", true, false},
		{"/mnt/slave/d", false, true},
		{"/mnt/slave/d", true, false},
		{"/mnt/with space/d", true, true},
		{"/mnt/privateer", true, true}, // on /, not /mnt/private
	} {
		err := checkPropagation(tc.path, tc.shared)
		if (err == nil) != tc.ok {
			t.Errorf("checkPropagation(%s, shared=%v) = %v, want ok=%v", tc.path, tc.shared, err, tc.ok)
		}
	}
}

func TestProcessArgs(t *testing.T) {
	img := imagestore.Image{Spec: ocispec.Image{Config: ocispec.ImageConfig{Entrypoint: []string{"/entry"}, Cmd: []string{"cmd"}}}}
	for _, tc := range []struct {
		command, args, want []string
	}{
		{nil, nil, []string{"/entry", "cmd"}},
		{nil, []string{"a"}, []string{"/entry", "a"}},
		{[]string{"/bin/sh"}, nil, []string{"/bin/sh"}},
		{[]string{"/bin/sh"}, []string{"-c", "x"}, []string{"/bin/sh", "-c", "x"}},
	} {
		got, err := processArgs(&runtime.ContainerConfig{Command: tc.command, Args: tc.args}, img)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("command %q args %q: %q, %v; want %q", tc.command, tc.args, got, err, tc.want)
		}
	}
	_, err := processArgs(&runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "c"}}, imagestore.Image{})
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("no command anywhere: %v", err)
	}
}

// TestSecurityOpts applies a container security context to a default
// spec: capabilities as containerd's CRI adds and drops them, paths,
// seccomp choices, AppArmor absent.
func TestSecurityOpts(t *testing.T) {
	gen := func(sc *runtime.LinuxContainerSecurityContext) *specs.Spec {
		t.Helper()
		opts, err := securityOpts(sc)
		if err != nil {
			t.Fatal(err)
		}
		s, err := oci.GenerateSpec(context.Background(), Namespace, "c1", opts...)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := gen(&runtime.LinuxContainerSecurityContext{Capabilities: &runtime.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_ADMIN"}}})
	if !slices.Equal(s.Process.Capabilities.Effective, []string{"CAP_NET_ADMIN"}) {
		t.Errorf("drop ALL, add NET_ADMIN: %v", s.Process.Capabilities.Effective)
	}
	s = gen(&runtime.LinuxContainerSecurityContext{Capabilities: &runtime.Capability{DropCapabilities: []string{"CHOWN"}}})
	if slices.Contains(s.Process.Capabilities.Bounding, "CAP_CHOWN") || !slices.Contains(s.Process.Capabilities.Bounding, "CAP_KILL") {
		t.Errorf("drop CHOWN: %v", s.Process.Capabilities.Bounding)
	}
	s = gen(&runtime.LinuxContainerSecurityContext{MaskedPaths: []string{"/bin/ls"}, ReadonlyPaths: []string{"/etc"}, NoNewPrivs: true})
	if !slices.Equal(s.Linux.MaskedPaths, []string{"/bin/ls"}) || !slices.Equal(s.Linux.ReadonlyPaths, []string{"/etc"}) || !s.Process.NoNewPrivileges {
		t.Errorf("paths %v %v, no_new_privs %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths, s.Process.NoNewPrivileges)
	}
	if s.Linux.Seccomp != nil {
		t.Error("no seccomp profile given: want unconfined, as the CRI defines it")
	}
	s = gen(&runtime.LinuxContainerSecurityContext{Seccomp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}})
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
		t.Errorf("RuntimeDefault: %+v", s.Linux.Seccomp)
	}
	s = gen(&runtime.LinuxContainerSecurityContext{Privileged: true, Seccomp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}})
	if s.Linux.Seccomp != nil || len(s.Linux.MaskedPaths) != 0 {
		t.Error("privileged: no seccomp, no masked paths")
	}
	for _, p := range []*runtime.SecurityProfile{nil, {ProfileType: runtime.SecurityProfile_RuntimeDefault}, {ProfileType: runtime.SecurityProfile_Unconfined}} {
		if err := checkAppArmor(p, ""); err != nil {
			t.Errorf("AppArmor %v on a host without it: %v", p, err)
		}
	}
	if _, err := securityOpts(&runtime.LinuxContainerSecurityContext{Seccomp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "rel/path"}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("relative localhost profile: %v", err)
	}
}

func TestLinuxResources(t *testing.T) {
	r := linuxResources(&runtime.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 20000, CpuShares: 512, MemoryLimitInBytes: 64 << 20, CpusetCpus: "0"})
	if *r.CPU.Period != 100000 || *r.CPU.Quota != 20000 || *r.CPU.Shares != 512 || *r.Memory.Limit != 64<<20 || r.CPU.Cpus != "0" {
		t.Errorf("resources: %+v %+v", r.CPU, r.Memory)
	}
	if r := linuxResources(&runtime.LinuxContainerResources{}); r.CPU != nil || r.Memory != nil {
		t.Errorf("empty resources set limits: %+v", r)
	}
}

func TestCgroupsPath(t *testing.T) {
	s := &Service{}
	for _, tc := range []struct {
		parent string
		h      *handler.Handler
		want   string
	}{
		{"", nil, "/k8s.io/id1"},
		{"/kubepods/burstable/pod1", nil, "/kubepods/burstable/pod1/id1"},
		{"/kubepods.slice/kubepods-pod1.slice", &handler.Handler{Options: map[string]any{"SystemdCgroup": true}}, "kubepods-pod1.slice:cri-berth:id1"},
	} {
		if got := s.cgroupsPath(tc.parent, "id1", tc.h); got != tc.want {
			t.Errorf("cgroupsPath(%q) = %q, want %q", tc.parent, got, tc.want)
		}
	}
}

func TestCPURate(t *testing.T) {
	var c cpuSamples
	t0 := time.Unix(100, 0)
	if r := c.rate("a", t0, 1e9); r != 0 {
		t.Errorf("first sample: %d", r)
	}
	if r := c.rate("a", t0.Add(2*time.Second), 2e9); r != 5e8 {
		t.Errorf("half a core over two seconds: %d", r)
	}
}
