package integration

// Pods and containers through the CRI as the kubelet drives them: crictl
// v1.37.0 against a real berthd, pods on a CNI bridge made by Debian's
// containernetworking-plugins, runc and gVisor's runsc, the sandbox image
// pulled through a hosts.toml mirror of registry.k8s.io from the local
// docker-registry, logs in the CRI format at the kubelet's path, ExecSync,
// idempotent stops and removals, container events, and a berthd killed
// and restarted under running pods.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cniPluginDir is where Debian's containernetworking-plugins installs.
const cniPluginDir = "/usr/lib/cni"

// criPodRequirements fails the test when a peer the pod tests need is
// missing, saying how to install it.
func criPodRequirements(t *testing.T) {
	t.Helper()
	requirements(t)
	crictlBinary(t)
	for _, bin := range []string{"runc", "iptables", "iptables-save", "ip", "skopeo"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found in PATH: run scripts/setup.sh test (apt-get install runc iptables iproute2 skopeo)", bin)
		}
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniPluginDir, p)); err != nil {
			t.Fatalf("CNI plugin %s not in %s: apt-get install containernetworking-plugins (scripts/setup.sh test)", p, cniPluginDir)
		}
	}
}

// criPodEnv is a berthd with a CRI configured for pods: its own bridge
// and subnet, a mirror of registry.k8s.io holding the sandbox image
// (registry.k8s.io/pause:3.6) and a busybox image.
type criPodEnv struct {
	t      *testing.T
	d      *daemon
	bridge string
	subnet netip.Prefix
	logDir string
	// image is the containers' image, as the pods pull it.
	image string
}

// podSubnets are the subnets this run handed out.
var podSubnets = struct {
	sync.Mutex
	used []netip.Prefix
}{}

// freePodSubnet picks a random /24 in 10.208.0.0/13 that no address or
// route of the host overlaps, nor another test's.
func freePodSubnet(t *testing.T) netip.Prefix {
	t.Helper()
	podSubnets.Lock()
	defer podSubnets.Unlock()
	used := slices.Clone(podSubnets.used)
	out, _ := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	addrs, _ := exec.Command("ip", "-4", "-o", "addr").Output()
	for _, f := range strings.Fields(string(out) + " " + string(addrs)) {
		if p, err := netip.ParsePrefix(f); err == nil {
			used = append(used, p)
		}
	}
	for range 100 {
		b := make([]byte, 2)
		_, _ = rand.Read(b)
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 208 + b[0]%8, b[1], 0}), 24)
		if !slices.ContainsFunc(used, p.Overlaps) {
			podSubnets.used = append(podSubnets.used, p)
			return p
		}
	}
	t.Fatal("no free /24 in 10.208.0.0/13")
	return netip.Prefix{}
}

func newCRIPodEnv(t *testing.T) *criPodEnv {
	t.Helper()
	criPodRequirements(t)
	buildShim(t)
	reg := startRegistry(t)
	hostsDir := t.TempDir()
	writeHosts(t, hostsDir, "registry.k8s.io", fmt.Sprintf(`server = "http://127.0.0.1:1"
[host."http://%s"]
  capabilities = ["pull", "resolve"]
`, reg.Addr))
	pushPauseImage(t, reg.ref("pause:3.6"))
	pushCRIImage(t, reg.ref("e2e/busybox:1.0"), "")

	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	e := &criPodEnv{
		t:      t,
		bridge: "bcri" + hex.EncodeToString(suffix),
		subnet: freePodSubnet(t),
		logDir: t.TempDir(),
		image:  "registry.k8s.io/e2e/busybox:1.0",
	}
	cniDir := t.TempDir()
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "berth-pod-test", "plugins": [
  {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": true,
   "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}`, e.bridge, t.TempDir(), e.subnet)
	// Two files: the first in name order is the pods' network.
	if err := os.WriteFile(filepath.Join(cniDir, "10-pods.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cniDir, "20-other.conflist"), []byte(`{"cniVersion": "1.0.0", "name": "other", "plugins": [{"type": "bridge", "bridge": "unused0"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	e.d = startDaemon(t, withConfig(criPodConfig(cniDir, hostsDir)))
	e.d.mustCrictl("pull", e.image)
	// Runs before the daemon's own clean-up: pods go through the CRI, so
	// that CNI DEL, unmounts and shims happen as in production.
	t.Cleanup(e.cleanup)
	return e
}

// criPodConfig is a version 2 CRI section with the built-in runtime
// handlers only (runc the default, runsc as berth defines it).
func criPodConfig(cniDir, hostsDir string) string {
	return fmt.Sprintf(`version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.6"
  restrict_oom_score_adj = true
  max_container_log_line_size = 64
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
`, cniPluginDir, cniDir, hostsDir)
}

// pushPauseImage pushes a pause image made of busybox: a shell that
// sleeps until TERM or INT.
func pushPauseImage(t *testing.T, ref string) {
	t.Helper()
	l := newLayout(t)
	layer := busyboxLayer(t)
	img := ocispec.Image{Platform: hostPlatform(), RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layer.diffID}},
		Config: ocispec.ImageConfig{Entrypoint: []string{"/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do /bin/busybox sleep 3600 & wait $!; done"}}}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: l.blob(ocispec.MediaTypeImageConfig, mustJSON(t, img)),
		Layers: []ocispec.Descriptor{l.blob(layer.desc.MediaType, layer.blob)}}
	l.tag("t", l.blob(ocispec.MediaTypeImageManifest, mustJSON(t, m)))
	skopeo(t, "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false", "oci:"+l.dir+":t", "docker://"+ref)
}

// cleanup removes every pod through the CRI, then the bridge.
func (e *criPodEnv) cleanup() {
	if e.d.proc != nil {
		for _, id := range strings.Fields(e.d.crictl("pods", "-q").stdout) {
			e.d.crictl("stopp", id)
			e.d.crictl("rmp", id)
		}
	}
	_ = exec.Command("ip", "link", "del", e.bridge).Run()
	removeHostState("k8s.io")
}

// podConfig writes a pod sandbox config and returns its path.
func (e *criPodEnv) podConfig(name string, extra map[string]any) string {
	e.t.Helper()
	cfg := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "berth-test", "uid": name + "-uid", "attempt": 1},
		"hostname":      name + "-host",
		"log_directory": filepath.Join(e.logDir, name),
		"labels":        map[string]string{"app": name},
		"linux":         map[string]any{},
	}
	for k, v := range extra {
		cfg[k] = v
	}
	return writeJSONFile(e.t, cfg)
}

// containerConfig writes a container config running script in sh.
func (e *criPodEnv) containerConfig(name, script string) string {
	e.t.Helper()
	return writeJSONFile(e.t, map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": e.image},
		"command":  []string{"/bin/sh", "-c", script},
		"log_path": name + "/0.log",
		"labels":   map[string]string{"container": name},
	})
}

func writeJSONFile(t *testing.T, v any) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "*.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := json.NewEncoder(f).Encode(v); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// podStatus is what the tests read of `crictl inspectp`.
type podStatus struct {
	Status struct {
		ID      string `json:"id"`
		State   string `json:"state"`
		Network struct {
			IP string `json:"ip"`
		} `json:"network"`
		Labels map[string]string `json:"labels"`
	} `json:"status"`
	Info struct {
		Pid            int             `json:"pid"`
		RuntimeType    string          `json:"runtimeType"`
		RuntimeHandler string          `json:"runtimeHandler"`
		Config         json.RawMessage `json:"config"`
		RuntimeSpec    json.RawMessage `json:"runtimeSpec"`
	} `json:"info"`
}

func (e *criPodEnv) inspectp(id string) podStatus {
	e.t.Helper()
	out := e.d.mustCrictl("inspectp", id)
	var st podStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		e.t.Fatalf("crictl inspectp %s: %v\n%s", id, err, out)
	}
	return st
}

// containerState is what the tests read of `crictl inspect`.
type containerState struct {
	Status struct {
		State      string `json:"state"`
		ExitCode   int    `json:"exitCode"`
		Reason     string `json:"reason"`
		FinishedAt string `json:"finishedAt"`
		LogPath    string `json:"logPath"`
		ImageRef   string `json:"imageRef"`
		ImageID    string `json:"imageId"`
	} `json:"status"`
	Info struct {
		Pid            int    `json:"pid"`
		RuntimeType    string `json:"runtimeType"`
		RuntimeHandler string `json:"runtimeHandler"`
		SandboxID      string `json:"sandboxID"`
	} `json:"info"`
}

func (e *criPodEnv) inspect(id string) containerState {
	e.t.Helper()
	out := e.d.mustCrictl("inspect", id)
	var st containerState
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		e.t.Fatalf("crictl inspect %s: %v\n%s", id, err, out)
	}
	return st
}

// runPod runs a pod and a container in it with script, started, and
// returns their IDs.
func (e *criPodEnv) runPod(name, script string, runpArgs ...string) (pod, ctr string) {
	e.t.Helper()
	podCfg := e.podConfig(name, nil)
	pod = strings.TrimSpace(e.d.mustCrictl(append(append([]string{"runp"}, runpArgs...), podCfg)...))
	ctr = strings.TrimSpace(e.d.mustCrictl("create", pod, e.containerConfig(name+"-c", script), podCfg))
	e.d.mustCrictl("start", ctr)
	return pod, ctr
}

// waitLog waits until the container's log file holds want.
func (e *criPodEnv) waitLog(path, want string) string {
	e.t.Helper()
	var got string
	eventually(e.t, 20*time.Second, func() error {
		b, err := os.ReadFile(path)
		got = string(b)
		if err != nil || !strings.Contains(got, want) {
			return fmt.Errorf("log %s lacks %q (%v):\n%s", path, want, err, got)
		}
		return nil
	})
	return got
}

// criLogLine is a line of the CRI log format.
var criLogLine = regexp.MustCompile(`^(\S+) (stdout|stderr) ([FP]) (.*)$`)

// checkCRILog checks every line of a CRI log file and returns the lines'
// contents by stream, partial lines joined.
func checkCRILog(t *testing.T, log string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	partial := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(log, "\n"), "\n") {
		m := criLogLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("log line %q is not in the CRI format", line)
		}
		if _, err := time.Parse(time.RFC3339Nano, m[1]); err != nil {
			t.Errorf("log line %q: timestamp: %v", line, err)
		}
		partial[m[2]] += m[4]
		if m[3] == "F" {
			out[m[2]] = append(out[m[2]], partial[m[2]])
			partial[m[2]] = ""
		}
	}
	return out
}

// checkGone fails the test when anything of pod or container id is
// still on the host a few seconds after its removal (shims exit
// asynchronously after their Shutdown).
func (e *criPodEnv) checkGone(id, when string) {
	e.t.Helper()
	var left []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		if left = e.podLeftovers(id); len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(left) > 0 {
		e.t.Errorf("left of %s %s: %q", id, when, left)
	}
}

// podLeftovers lists what of pod id is left on the host: its network
// namespace pin, mounts under the daemon's state, iptables rules naming
// it, processes naming it.
func (e *criPodEnv) podLeftovers(id string) []string {
	e.t.Helper()
	var left []string
	if _, err := os.Stat(filepath.Join(e.d.State, "io.containerd.grpc.v1.cri", "netns", id)); err == nil {
		left = append(left, "netns pin")
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if strings.Contains(line, id) {
				left = append(left, "mount: "+strings.TrimSpace(line))
			}
		}
	}
	for _, table := range []string{"nat", "filter"} {
		out, _ := exec.Command("iptables-save", "-t", table).Output()
		for line := range strings.Lines(string(out)) {
			if strings.Contains(line, id) {
				left = append(left, "iptables: "+strings.TrimSpace(line))
			}
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), id) {
			left = append(left, "process: "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return left
}

// TestCRIPodLifecycle: a runc pod on the CNI bridge with a container, from
// runp to rmp, as the kubelet drives them, with what ctr, the log file
// and the host show at each step.
func TestCRIPodLifecycle(t *testing.T) {
	t.Parallel()
	e := newCRIPodEnv(t)
	d := e.d
	events := collectContainerEvents(t, d)

	hostPort := freePort(t)
	podCfg := e.podConfig("web", map[string]any{
		"port_mappings": []map[string]any{{"container_port": 80, "host_port": hostPort}},
		"dns_config":    map[string]any{"servers": []string{"192.0.2.53"}, "searches": []string{"berth.test"}, "options": []string{"ndots:2"}},
	})
	pod := strings.TrimSpace(d.mustCrictl("runp", podCfg))
	st := e.inspectp(pod)
	ip, err := netip.ParseAddr(st.Status.Network.IP)
	if err != nil || !e.subnet.Contains(ip) {
		t.Errorf("pod IP %q is not in the pods' subnet %s (the first conflist of conf_dir)", st.Status.Network.IP, e.subnet)
	}
	if st.Status.State != "SANDBOX_READY" || st.Info.RuntimeType != "io.containerd.runc.v2" || st.Info.Pid == 0 ||
		len(st.Info.RuntimeSpec) == 0 || len(st.Info.Config) == 0 {
		t.Errorf("crictl inspectp: state %s, info.runtimeType %q, pid %d, spec %d bytes, config %d bytes",
			st.Status.State, st.Info.RuntimeType, st.Info.Pid, len(st.Info.RuntimeSpec), len(st.Info.Config))
	}
	if out := d.mustCtr("-n", "k8s.io", "containers", "ls", "-q"); !strings.Contains(out, pod) {
		t.Errorf("ctr -n k8s.io containers ls does not show the pod %s:\n%s", pod, out)
	}
	// The published port: portmap's DNAT to the pod's address.
	if nat, _ := exec.Command("iptables-save", "-t", "nat").Output(); !strings.Contains(string(nat), fmt.Sprintf("%s:80", ip)) {
		t.Errorf("no DNAT of host port %d to %s:80 in the nat table", hostPort, ip)
	}
	if out := d.mustCrictl("pods", "--label", "app=web", "-q"); strings.TrimSpace(out) != pod {
		t.Errorf("crictl pods --label app=web: %q", out)
	}
	if out := d.mustCrictl("pods", "--label", "app=other", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("crictl pods --label app=other: %q", out)
	}

	script := `echo hello-from-berth; echo to-stderr >&2; echo 0123456789012345678901234567890123456789012345678901234567890123456789-long; ` +
		`i=0; while :; do echo tick $i; i=$((i+1)); /bin/busybox sleep 1; done`
	ctr := strings.TrimSpace(d.mustCrictl("create", pod, e.containerConfig("app", script), podCfg))
	if cs := e.inspect(ctr); cs.Status.State != "CONTAINER_CREATED" {
		t.Errorf("created container: state %s", cs.Status.State)
	}
	d.mustCrictl("start", ctr)
	cs := e.inspect(ctr)
	if cs.Status.State != "CONTAINER_RUNNING" || cs.Info.Pid == 0 || cs.Info.RuntimeType != "io.containerd.runc.v2" ||
		cs.Info.SandboxID != pod || !strings.HasPrefix(cs.Status.ImageID, "sha256:") || cs.Status.ImageRef == "" {
		t.Errorf("crictl inspect of the running container: %+v", cs)
	}
	if out := d.mustCrictl("ps", "-q", "--pod", pod, "--state", "running"); strings.TrimSpace(out) != ctr {
		t.Errorf("crictl ps --pod --state running: %q, want %s", out, ctr)
	}

	// ExecSync: in the pod's network and UTS namespaces, with its files.
	checkExec(t, d, ctr, []string{"/bin/busybox", "hostname"}, "web-host\n")
	checkExec(t, d, ctr, []string{"/bin/cat", "/etc/resolv.conf"}, "search berth.test\nnameserver 192.0.2.53\noptions ndots:2\n")
	if out := d.mustCrictl("exec", "-s", ctr, "/bin/busybox", "ip", "-4", "addr", "show", "eth0"); !strings.Contains(out, ip.String()+"/") {
		t.Errorf("eth0 in the container lacks the pod IP %s:\n%s", ip, out)
	}
	if r := d.crictl("exec", "-s", ctr, "/bin/sh", "-c", "echo out; echo err >&2; exit 3"); r.code == 0 || !strings.Contains(r.stderr, "exited with 3") {
		t.Errorf("crictl exec -s of a failing command: %s", r)
	}
	if r := d.crictl("exec", "-s", "--timeout", "1", ctr, "/bin/busybox", "sleep", "30"); r.code == 0 || !strings.Contains(r.stderr, "DeadlineExceeded") {
		t.Errorf("crictl exec -s --timeout 1 of sleep 30: %s", r)
	}

	// Logs: the CRI format at log_directory/log_path; the long line in
	// parts of max_container_log_line_size (64).
	logPath := filepath.Join(e.logDir, "web", "app", "0.log")
	if cs.Status.LogPath != logPath {
		t.Errorf("log path %q, want %q", cs.Status.LogPath, logPath)
	}
	lines := checkCRILog(t, e.waitLog(logPath, "tick 1"))
	if !slices.Contains(lines["stdout"], "hello-from-berth") || !slices.Contains(lines["stderr"], "to-stderr") ||
		!slices.Contains(lines["stdout"], "0123456789012345678901234567890123456789012345678901234567890123456789-long") {
		t.Errorf("log lines: %q", lines)
	}
	if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), " stdout P 0123456789") {
		t.Errorf("the 74-byte line is not split at 64 bytes:\n%s", b)
	}
	if out := d.mustCrictl("logs", ctr); !strings.Contains(out, "hello-from-berth") {
		t.Errorf("crictl logs: %q", out)
	}
	// The kubelet rotates: move the file away, ReopenContainerLog.
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	client := runtime.NewRuntimeServiceClient(d.client())
	ctx, cancel := context.WithTimeout(context.Background(), ctrTimeout)
	defer cancel()
	if _, err := client.ReopenContainerLog(ctx, &runtime.ReopenContainerLogRequest{ContainerId: ctr}); err != nil {
		t.Errorf("ReopenContainerLog: %v", err)
	}
	e.waitLog(logPath, "tick")

	d.mustCrictl("stop", "--timeout", "10", ctr)
	cs = e.inspect(ctr)
	if cs.Status.State != "CONTAINER_EXITED" || cs.Status.ExitCode != 143 || cs.Status.Reason != "Error" || cs.Status.FinishedAt == "" {
		t.Errorf("stopped container (SIGTERM): %+v", cs.Status)
	}
	d.mustCrictl("rm", ctr)
	if out := d.mustCrictl("ps", "-a", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("crictl ps -a after rm: %q", out)
	}
	// Stop and remove what is gone: success, as the kubelet needs.
	for name, call := range map[string]func() error{
		"StopContainer": func() error {
			_, err := client.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: ctr})
			return err
		},
		"RemoveContainer": func() error {
			_, err := client.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: ctr})
			return err
		},
		"StopPodSandbox": func() error {
			_, err := client.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: "nosuchpod"})
			return err
		},
		"RemovePodSandbox": func() error {
			_, err := client.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: "nosuchpod"})
			return err
		},
	} {
		if err := call(); err != nil {
			t.Errorf("%s of something gone: %v", name, err)
		}
	}

	d.mustCrictl("stopp", pod)
	d.mustCrictl("stopp", pod)
	if st := e.inspectp(pod); st.Status.State != "SANDBOX_NOTREADY" {
		t.Errorf("stopped pod: state %s", st.Status.State)
	}
	e.checkGone(pod, "after stopp (the network is torn down at the first stop)")
	d.mustCrictl("rmp", pod)
	if _, err := client.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Errorf("second RemovePodSandbox: %v", err)
	}
	if out := d.mustCrictl("pods", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("crictl pods after rmp: %q", out)
	}
	if out := d.mustCtr("-n", "k8s.io", "containers", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("records left after rmp: %q", out)
	}

	// The event stream saw the container's whole life.
	want := []string{"CONTAINER_CREATED_EVENT", "CONTAINER_STARTED_EVENT", "CONTAINER_STOPPED_EVENT", "CONTAINER_DELETED_EVENT"}
	eventually(t, 5*time.Second, func() error {
		if got := events.of(ctr); !slices.Equal(got, want) {
			return fmt.Errorf("events of the container: %v, want %v", got, want)
		}
		return nil
	})

	// An unknown runtime handler fails, naming it and the configured ones.
	stderr := d.crictlFails("runp", "--runtime", "nosuch", e.podConfig("bad", nil))
	for _, w := range []string{`runtime handler \"nosuch\" is not configured`, "crun, runc, runsc"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("runp with an unknown handler: error lacks %q:\n%s", w, stderr)
		}
	}
}

func checkExec(t *testing.T, d *daemon, ctr string, cmd []string, want string) {
	t.Helper()
	// crictl prints two newlines after the output.
	if out := d.mustCrictl(append([]string{"exec", "-s", ctr}, cmd...)...); strings.TrimRight(out, "\n")+"\n" != want {
		t.Errorf("crictl exec -s %s: %q, want %q", strings.Join(cmd, " "), out, want)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	var port int
	if _, err := fmt.Sscanf(freeAddr(t), "127.0.0.1:%d", &port); err != nil {
		t.Fatal(err)
	}
	return port
}

// containerEvents records GetContainerEvents.
type containerEvents struct {
	mu   sync.Mutex
	byID map[string][]string
}

func (c *containerEvents) of(id string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.byID[id])
}

func collectContainerEvents(t *testing.T, d *daemon) *containerEvents {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := runtime.NewRuntimeServiceClient(d.client()).GetContainerEvents(ctx, &runtime.GetEventsRequest{})
	if err != nil {
		t.Fatalf("GetContainerEvents: %v", err)
	}
	ev := &containerEvents{byID: map[string][]string{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			ev.mu.Lock()
			ev.byID[resp.GetContainerId()] = append(ev.byID[resp.GetContainerId()], resp.GetContainerEventType().String())
			ev.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ev
}

// TestCRIPodRunsc: a pod with runtime handler runsc, berth's built-in
// gVisor handler: its containers run under gVisor, on the pod's network.
func TestCRIPodRunsc(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("runsc"); err != nil {
		t.Fatalf("runsc not found in PATH: apt-get install runsc (scripts/setup.sh test)")
	}
	e := newCRIPodEnv(t)
	d := e.d
	pod, ctr := e.runPod("gvisor", "while :; do echo gvisor-alive; /bin/busybox sleep 1; done", "--runtime", "runsc")
	st := e.inspectp(pod)
	if st.Info.RuntimeType != "io.containerd.runsc.v1" || st.Info.RuntimeHandler != "runsc" {
		t.Errorf("crictl inspectp: runtimeType %q, runtimeHandler %q", st.Info.RuntimeType, st.Info.RuntimeHandler)
	}
	if out := d.mustCrictl("exec", "-s", ctr, "/bin/busybox", "dmesg"); !strings.Contains(out, "Starting gVisor") {
		t.Errorf("dmesg in the runsc container shows no gVisor banner:\n%s", out)
	}
	if out := d.mustCrictl("exec", "-s", ctr, "/bin/busybox", "ip", "addr"); !strings.Contains(out, st.Status.Network.IP+"/") {
		t.Errorf("the runsc container is not on the pod's network (%s):\n%s", st.Status.Network.IP, out)
	}
	e.waitLog(filepath.Join(e.logDir, "gvisor", "gvisor-c", "0.log"), "stdout F gvisor-alive")
	d.mustCrictl("stopp", pod)
	d.mustCrictl("rmp", pod)
	e.checkGone(pod, "after rmp")
	e.checkGone(ctr, "after rmp")
}

// TestCRIPodRestart: berthd is killed under running pods and restarted;
// the kubelet's view is the same, with the same IPs; a container that
// exited meanwhile shows its exit code; logs were written meanwhile.
func TestCRIPodRestart(t *testing.T) {
	t.Parallel()
	e := newCRIPodEnv(t)
	d := e.d
	podA, tick := e.runPod("alpha", "i=0; while :; do echo tick $i; i=$((i+1)); /bin/busybox sleep 1; done")
	podCfg := e.podConfig("alpha", nil)
	short := strings.TrimSpace(d.mustCrictl("create", podA, e.containerConfig("short", "/bin/busybox sleep 3; echo bye; exit 7"), podCfg))
	d.mustCrictl("start", short)
	podB, _ := e.runPod("beta", "while :; do /bin/busybox sleep 1; done")

	before := map[string]podStatus{podA: e.inspectp(podA), podB: e.inspectp(podB)}
	tickPid := e.inspect(tick).Info.Pid
	logPath := filepath.Join(e.logDir, "alpha", "alpha-c", "0.log")
	e.waitLog(logPath, "tick 0")

	d.kill()
	killedAt := time.Now()
	time.Sleep(5 * time.Second) // the short container exits meanwhile
	d.start()

	if got, want := sortedFields(d.mustCrictl("pods", "-q")), sorted(podA, podB); !slices.Equal(got, want) {
		t.Errorf("pods after the restart: %v, want %v", got, want)
	}
	for id, b := range before {
		a := e.inspectp(id)
		if a.Status.State != "SANDBOX_READY" || a.Status.Network.IP != b.Status.Network.IP || a.Info.Pid != b.Info.Pid {
			t.Errorf("pod %s after the restart: state %s, IP %s, pid %d; before: IP %s, pid %d",
				id, a.Status.State, a.Status.Network.IP, a.Info.Pid, b.Status.Network.IP, b.Info.Pid)
		}
	}
	if cs := e.inspect(tick); cs.Status.State != "CONTAINER_RUNNING" || cs.Info.Pid != tickPid {
		t.Errorf("running container after the restart: %s, pid %d (was %d)", cs.Status.State, cs.Info.Pid, tickPid)
	}
	if cs := e.inspect(short); cs.Status.State != "CONTAINER_EXITED" || cs.Status.ExitCode != 7 || cs.Status.Reason != "Error" {
		t.Errorf("container that exited while berthd was down: %+v", cs.Status)
	}
	if out := d.mustCrictl("ps", "-a", "--state", "exited", "-q"); strings.TrimSpace(out) != short {
		t.Errorf("crictl ps -a --state exited: %q, want %s", out, short)
	}
	// Lines written while berthd was down are there.
	if !logWrittenBetween(t, logPath, killedAt.Add(time.Second), killedAt.Add(4*time.Second)) {
		t.Errorf("no log lines written while berthd was down:\n%s", e.waitLog(logPath, "tick"))
	}
	checkExec(t, d, tick, []string{"/bin/busybox", "hostname"}, "alpha-host\n")
	if out := d.mustCrictl("logs", short); !strings.Contains(out, "bye") {
		t.Errorf("crictl logs of the exited container: %q", out)
	}
	for _, pod := range []string{podA, podB} {
		d.mustCrictl("stopp", pod)
		d.mustCrictl("rmp", pod)
		e.checkGone(pod, "after rmp")
	}
}

func sortedFields(s string) []string {
	f := strings.Fields(s)
	slices.Sort(f)
	return f
}

// logWrittenBetween reports whether the CRI log at path has a line stamped
// between from and to.
func logWrittenBetween(t *testing.T, path string, from, to time.Time) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		stamp, _, _ := strings.Cut(sc.Text(), " ")
		if at, err := time.Parse(time.RFC3339Nano, stamp); err == nil && at.After(from) && at.Before(to) {
			return true
		}
	}
	return false
}
