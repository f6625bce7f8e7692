package integration

// The CRI as the kubelet sees it: crictl v1.37.0 (scripts/setup.sh test
// installs it) against a real berthd, images from the local
// docker-registry through hosts.toml, and Debian's ctr looking at what the
// CRI recorded in namespace k8s.io.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// crictlTimeout bounds one crictl command.
const crictlTimeout = 90 * time.Second

// crictlBinary is crictl from PATH, else where scripts/setup.sh or the
// critest kit (build-tools.sh) install it. A missing crictl fails the
// test: it is part of the test setup.
func crictlBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("crictl"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/local/bin/crictl", "/usr/local/lib/berth-critest/bin/crictl"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("crictl not found in PATH, /usr/local/bin or /usr/local/lib/berth-critest/bin: run scripts/setup.sh test " +
		"(it runs go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0 into /usr/local/bin)")
	return ""
}

// crictlCmd is `crictl -r unix://SOCKET -i unix://SOCKET args...` with an
// empty config file, so that nothing on the machine changes what it does;
// not started.
func (d *daemon) crictlCmd(ctx context.Context, args ...string) *exec.Cmd {
	d.t.Helper()
	bin := crictlBinary(d.t)
	cfg := filepath.Join(filepath.Dir(d.Config), "crictl.yaml")
	if err := os.WriteFile(cfg, nil, 0o644); err != nil {
		d.t.Fatal(err)
	}
	ep := "unix://" + d.Address
	return exec.CommandContext(ctx, bin, append([]string{"--config", cfg, "-r", ep, "-i", ep, "--timeout", "60s"}, args...)...)
}

// crictl runs crictl against d.
func (d *daemon) crictl(args ...string) result {
	d.t.Helper()
	return runCmd(d.t, "crictl "+strings.Join(args, " "), crictlTimeout, nil, func(ctx context.Context) *exec.Cmd {
		return d.crictlCmd(ctx, args...)
	})
}

// crictlStdin runs crictl with stdin.
func (d *daemon) crictlStdin(stdin string, args ...string) result {
	d.t.Helper()
	return runCmd(d.t, "crictl "+strings.Join(args, " "), crictlTimeout, strings.NewReader(stdin), func(ctx context.Context) *exec.Cmd {
		return d.crictlCmd(ctx, args...)
	})
}

// mustCrictl runs crictl and fails the test unless it exits 0.
func (d *daemon) mustCrictl(args ...string) string {
	d.t.Helper()
	r := d.crictl(args...)
	if r.code != 0 {
		d.t.Fatalf("crictl %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// crictlFails runs crictl, fails the test unless it exits non-zero, and
// returns its stderr.
func (d *daemon) crictlFails(args ...string) string {
	d.t.Helper()
	r := d.crictl(args...)
	if r.code == 0 {
		d.t.Fatalf("crictl %s succeeded, want an error: %s", strings.Join(args, " "), r)
	}
	return r.stderr
}

// criConfig is a version 2 CRI section with a runsc handler, the CNI conf
// dir cniDir and the hosts directory hostsDir.
func criConfig(cniDir, hostsDir string) string {
	return fmt.Sprintf(`version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.6"
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc]
      runtime_type = "io.containerd.runsc.v1"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc.options]
        TypeUrl = "io.containerd.runsc.v1.options"
        ConfigPath = "/etc/containerd/runsc.toml"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
`, cniDir, hostsDir)
}

// crictlInfo is what the tests read of `crictl info`.
type crictlInfo struct {
	Status struct {
		Conditions []struct {
			Type    string `json:"type"`
			Status  bool   `json:"status"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"conditions"`
	} `json:"status"`
	Config struct {
		SandboxImage string `json:"sandboxImage"`
		Containerd   struct {
			Snapshotter        string `json:"snapshotter"`
			DefaultRuntimeName string `json:"defaultRuntimeName"`
			Runtimes           map[string]struct {
				RuntimeType string         `json:"runtimeType"`
				Options     map[string]any `json:"options"`
			} `json:"runtimes"`
		} `json:"containerd"`
	} `json:"config"`
	RuntimeHandlers []struct {
		Name string `json:"name"`
	} `json:"runtimeHandlers"`
}

func (d *daemon) crictlInfo() crictlInfo {
	d.t.Helper()
	out := d.mustCrictl("info")
	var info crictlInfo
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		d.t.Fatalf("crictl info: %v\n%s", err, out)
	}
	return info
}

func (i crictlInfo) condition(typ string) (ok bool, reason, message string) {
	for _, c := range i.Status.Conditions {
		if c.Type == typ {
			return c.Status, c.Reason, c.Message
		}
	}
	return false, "", "(no such condition)"
}

// TestCRIVersionAndInfo: crictl version and info on berthd; the runtime
// handlers are listed, NetworkReady follows the CNI conf dir, and the CRI
// keys of the config are not warned about.
func TestCRIVersionAndInfo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cniDir := filepath.Join(dir, "cni")
	// One key berth does not implement yet, for the warning below.
	unimplemented := `[plugins."io.containerd.grpc.v1.cri".x509_key_pair_streaming]
  tls_cert_file = "/etc/berth/stream.crt"
`
	d := startDaemon(t, withConfig(criConfig(cniDir, filepath.Join(dir, "certs.d"))+unimplemented))

	out := d.mustCrictl("version")
	for _, want := range []string{"RuntimeName:  berth", "RuntimeApiVersion:  v1", "Version:  0.1.0"} {
		if !strings.Contains(out, want) {
			t.Errorf("crictl version lacks %q:\n%s", want, out)
		}
	}

	out = d.mustCrictl("info")
	// What `crictl info | grep -A3 -i runtimes` shows.
	lines := strings.Split(out, "\n")
	i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(strings.ToLower(l), `"runtimes"`) })
	if i < 0 || !strings.Contains(strings.Join(lines[i:min(i+4, len(lines))], "\n"), `"crun"`) {
		t.Errorf("crictl info | grep -A3 -i runtimes shows no handler:\n%s", out)
	}
	info := d.crictlInfo()
	for name, typ := range map[string]string{"runc": "io.containerd.runc.v2", "runsc": "io.containerd.runsc.v1", "crun": "io.containerd.runc.v2"} {
		if got := info.Config.Containerd.Runtimes[name].RuntimeType; got != typ {
			t.Errorf("runtime %s: type %q, want %q", name, got, typ)
		}
	}
	if got := info.Config.Containerd.Runtimes["runsc"].Options["ConfigPath"]; got != "/etc/containerd/runsc.toml" {
		t.Errorf("runsc options: %v", info.Config.Containerd.Runtimes["runsc"].Options)
	}
	if info.Config.SandboxImage != "registry.k8s.io/pause:3.6" || info.Config.Containerd.DefaultRuntimeName != "runc" || info.Config.Containerd.Snapshotter != "overlayfs" {
		t.Errorf("config: %+v", info.Config)
	}
	var handlers []string
	for _, h := range info.RuntimeHandlers {
		handlers = append(handlers, h.Name)
	}
	if !slices.Contains(handlers, "runsc") || !slices.Contains(handlers, "runc") {
		t.Errorf("runtimeHandlers %v", handlers)
	}
	if ok, _, _ := info.condition("RuntimeReady"); !ok {
		t.Errorf("RuntimeReady false:\n%s", out)
	}
	ok, reason, msg := info.condition("NetworkReady")
	if ok || reason != "NetworkPluginNotReady" || !strings.Contains(msg, cniDir) {
		t.Errorf("NetworkReady without a CNI config: %v %q %q, want false, NetworkPluginNotReady, a message naming %s", ok, reason, msg, cniDir)
	}

	// A configuration appears: the network is ready, without a restart.
	if err := os.MkdirAll(cniDir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := `{"cniVersion": "1.0.0", "name": "berth-test", "plugins": [{"type": "bridge", "bridge": "berthtest0"}, {"type": "portmap"}]}`
	if err := os.WriteFile(filepath.Join(cniDir, "10-test.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, reason, msg := d.crictlInfo().condition("NetworkReady"); !ok {
		t.Errorf("NetworkReady with a CNI config: false, %q %q", reason, msg)
	}

	// Pods are served (cri_pod_test.go drives them); there are none yet.
	if out := d.mustCrictl("pods", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("crictl pods -q on a new daemon: %q", out)
	}
	if out := d.mustCtr("plugins", "ls"); !regexp.MustCompile(`io\.containerd\.grpc\.v1\s+cri\s+.*ok`).MatchString(out) {
		t.Errorf("ctr plugins ls shows no working CRI plugin:\n%s", out)
	}
	// Only the key berth does not implement is warned about, once.
	var warnings []string
	for _, line := range strings.Split(d.log(), "\n") {
		if strings.Contains(line, "io.containerd.grpc.v1.cri") && strings.Contains(line, "level=WARN") {
			warnings = append(warnings, line)
		}
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "x509_key_pair_streaming") || !strings.Contains(warnings[0], "not implemented") {
		t.Errorf("warnings about CRI keys: %q, want one, about x509_key_pair_streaming", warnings)
	}
}

// criImage pushes a one-platform image for this host to ref with skopeo
// (extra: skopeo's flags, e.g. credentials): the busybox layer and a small
// one, run as user. It returns the image and its size as the CRI counts
// it (manifest, config, layers).
func pushCRIImage(t *testing.T, ref, user string, extra ...string) (regImage, int64) {
	t.Helper()
	l := newLayout(t)
	layers := []regLayer{busyboxLayer(t), filesLayer(t, map[string]string{"etc/image-name": ref})}
	img := ocispec.Image{Platform: hostPlatform(), RootFS: ocispec.RootFS{Type: "layers"},
		Config: ocispec.ImageConfig{User: user, Cmd: []string{"/bin/sh"}}}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	for _, layer := range layers {
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, layer.diffID)
		m.Layers = append(m.Layers, l.blob(layer.desc.MediaType, layer.blob))
	}
	m.Config = l.blob(ocispec.MediaTypeImageConfig, mustJSON(t, img))
	desc := l.blob(ocispec.MediaTypeImageManifest, mustJSON(t, m))
	l.tag("t", desc)
	args := append([]string{"copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false"}, extra...)
	skopeo(t, append(args, "oci:"+l.dir+":t", "docker://"+ref)...)
	size := desc.Size + m.Config.Size
	for _, layer := range m.Layers {
		size += layer.Size
	}
	return regImage{manifest: desc, config: m.Config, layers: layers}, size
}

// crictlImage is one image of `crictl images -o json` or the status of
// `crictl inspecti`.
type crictlImage struct {
	ID          string   `json:"id"`
	RepoTags    []string `json:"repoTags"`
	RepoDigests []string `json:"repoDigests"`
	Size        string   `json:"size"`
	UID         *struct {
		Value string `json:"value"`
	} `json:"uid"`
	Username string `json:"username"`
}

func (d *daemon) crictlImages(filter ...string) []crictlImage {
	d.t.Helper()
	out := d.mustCrictl(append([]string{"images", "-o", "json"}, filter...)...)
	var list struct {
		Images []crictlImage `json:"images"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		d.t.Fatalf("crictl images -o json: %v\n%s", err, out)
	}
	return list.Images
}

// k8sImages are the image record names of namespace k8s.io, by ctr.
func (d *daemon) k8sImages() []string {
	d.t.Helper()
	names := strings.Fields(d.mustCtr("-n", "k8s.io", "images", "ls", "-q"))
	slices.Sort(names)
	return names
}

// TestCRIImages pulls through a hosts.toml mirror of registry.k8s.io with
// crictl, then lists, inspects (by tag, ID and digest) and removes (by
// tag and by short ID) the image, and checks it with ctr in k8s.io.
func TestCRIImages(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	hostsDir := t.TempDir()
	// The mirror has the image; the server itself is a closed local port,
	// so nothing leaves the machine and a miss fails fast.
	writeHosts(t, hostsDir, "registry.k8s.io", fmt.Sprintf(`server = "http://127.0.0.1:1"
[host."http://%s"]
  capabilities = ["pull", "resolve"]
`, reg.Addr))
	img, size := pushCRIImage(t, reg.ref("e2e/busybox:1.0"), "1002:1003")
	d := startDaemon(t, withConfig(criConfig(t.TempDir(), hostsDir)))
	const ref = "registry.k8s.io/e2e/busybox:1.0"
	id := img.config.Digest.String()
	repoDigest := "registry.k8s.io/e2e/busybox@" + img.manifest.Digest.String()

	if out := d.mustCrictl("pull", ref); !strings.Contains(out, id) {
		t.Fatalf("crictl pull printed %q, want the image ID %s", out, id)
	}
	// The records containerd's CRI makes, labeled managed, in k8s.io only.
	if got, want := d.k8sImages(), sorted(ref, repoDigest, id); !slices.Equal(got, want) {
		t.Errorf("ctr -n k8s.io images ls: %v, want %v", got, want)
	}
	if out := d.mustCtr("-n", "k8s.io", "images", "ls"); strings.Count(out, "io.cri-containerd.image=managed") != 3 {
		t.Errorf("ctr -n k8s.io images ls: records not labeled managed:\n%s", out)
	}
	if out := d.mustCtr("images", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("namespace default sees CRI images: %q", out)
	}
	chain := chainIDs(img.layers)
	if kinds := snapshotKinds(t, d.mustCtr("-n", "k8s.io", "snapshots", "--snapshotter", "overlayfs", "ls")); kinds[chain[len(chain)-1]] != "Committed" {
		t.Errorf("the image is not unpacked into overlayfs: %v", kinds)
	}

	checkCRIImageListing(t, d, img, size, ref, repoDigest)
	checkCRIImageStatus(t, d, img, ref, repoDigest)
	checkImageFsInfo(t, d)
	checkCRIImageRemoval(t, d, ref, id)

	// A missing image fails, naming it and the hosts tried.
	stderr := d.crictlFails("pull", "registry.k8s.io/e2e/missing:1")
	for _, want := range []string{"registry.k8s.io/e2e/missing:1", "k8s.io", reg.Addr, "not found"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("pull of a missing image: error lacks %q:\n%s", want, stderr)
		}
	}
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

func checkCRIImageListing(t *testing.T, d *daemon, img regImage, size int64, ref, repoDigest string) {
	t.Helper()
	imgs := d.crictlImages()
	if len(imgs) != 1 {
		t.Fatalf("crictl images: %+v, want one image", imgs)
	}
	got := imgs[0]
	if got.ID != img.config.Digest.String() || !slices.Equal(got.RepoTags, []string{ref}) ||
		!slices.Equal(got.RepoDigests, []string{repoDigest}) || got.Size != fmt.Sprint(size) {
		t.Errorf("crictl images: %+v, want id %s, tag %s, digest %s, size %d", got, img.config.Digest, ref, repoDigest, size)
	}
	if got.UID == nil || got.UID.Value != "1002" || got.Username != "" {
		t.Errorf("user of the image: uid %v, username %q; want 1002", got.UID, got.Username)
	}
	// The table: IMAGE TAG IMAGE-ID SIZE.
	table := d.mustCrictl("images")
	row := regexp.MustCompile(`(?m)^registry\.k8s\.io/e2e/busybox\s+1\.0\s+(\S+)\s+\S+\s*$`).FindStringSubmatch(table)
	if row == nil || !strings.HasPrefix(img.config.Digest.Encoded(), row[1]) {
		t.Errorf("crictl images table lacks the image with its short ID:\n%s", table)
	}
	// StreamImages (the kubelet's CRIListStreaming) sends the same images.
	ctx, cancel := context.WithTimeout(context.Background(), ctrTimeout)
	defer cancel()
	stream, err := runtime.NewImageServiceClient(d.client()).StreamImages(ctx, &runtime.StreamImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var streamed []string
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("StreamImages: %v", err)
		}
		for _, img := range resp.GetImages() {
			streamed = append(streamed, img.GetId())
		}
	}
	if !slices.Equal(streamed, []string{got.ID}) {
		t.Errorf("StreamImages sent %v, want %s", streamed, got.ID)
	}
	if n := len(d.crictlImages(ref)); n != 1 {
		t.Errorf("crictl images %s: %d images", ref, n)
	}
	if n := len(d.crictlImages("registry.k8s.io/e2e/other:1")); n != 0 {
		t.Errorf("crictl images of an image that is not there: %d images", n)
	}
}

func checkCRIImageStatus(t *testing.T, d *daemon, img regImage, ref, repoDigest string) {
	t.Helper()
	var byTag string
	for _, name := range []string{ref, img.config.Digest.String(), img.config.Digest.Encoded()[:12], repoDigest} {
		out := d.mustCrictl("inspecti", name)
		var got struct {
			Status crictlImage `json:"status"`
			Info   struct {
				ChainID   string        `json:"chainID"`
				ImageSpec ocispec.Image `json:"imageSpec"`
			} `json:"info"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("crictl inspecti %s: %v\n%s", name, err, out)
		}
		chain := chainIDs(img.layers)
		if got.Status.ID != img.config.Digest.String() || got.Info.ChainID != chain[len(chain)-1] || got.Info.ImageSpec.Config.User != "1002:1003" ||
			len(got.Info.ImageSpec.RootFS.DiffIDs) != 2 {
			t.Errorf("crictl inspecti %s:\n%s", name, out)
		}
		status, _ := json.Marshal(got.Status)
		if byTag == "" {
			byTag = string(status)
		} else if string(status) != byTag {
			t.Errorf("status by %s differs from status by tag:\n%s\n%s", name, status, byTag)
		}
	}
}

func checkImageFsInfo(t *testing.T, d *daemon) {
	t.Helper()
	out := d.mustCrictl("imagefsinfo")
	type fsUsage struct {
		Timestamp string `json:"timestamp"`
		FsID      struct {
			Mountpoint string `json:"mountpoint"`
		} `json:"fsId"`
		UsedBytes  struct{ Value string } `json:"usedBytes"`
		InodesUsed struct{ Value string } `json:"inodesUsed"`
	}
	var info struct {
		Status struct {
			ImageFilesystems     []fsUsage `json:"imageFilesystems"`
			ContainerFilesystems []fsUsage `json:"containerFilesystems"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("crictl imagefsinfo: %v\n%s", err, out)
	}
	bin, err := os.Stat("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(d.Root, "io.containerd.snapshotter.v1.overlayfs")
	for _, fs := range append(info.Status.ImageFilesystems, info.Status.ContainerFilesystems...) {
		var used, inodes int64
		fmt.Sscan(fs.UsedBytes.Value, &used)
		fmt.Sscan(fs.InodesUsed.Value, &inodes)
		if fs.FsID.Mountpoint != want || used < bin.Size() || inodes < 5 || fs.Timestamp == "" {
			t.Errorf("crictl imagefsinfo: %+v, want %s using at least busybox's %d bytes", fs, want, bin.Size())
		}
	}
	if len(info.Status.ImageFilesystems) != 1 || len(info.Status.ContainerFilesystems) != 1 {
		t.Errorf("crictl imagefsinfo:\n%s", out)
	}
}

func checkCRIImageRemoval(t *testing.T, d *daemon, ref, id string) {
	t.Helper()
	if out := d.mustCrictl("rmi", ref); !strings.Contains(out, "Deleted: "+ref) {
		t.Errorf("crictl rmi %s: %q", ref, out)
	}
	if got := d.k8sImages(); len(got) != 0 {
		t.Errorf("records left after crictl rmi by tag: %v", got)
	}
	// Removal collects at once: no snapshot is left.
	if kinds := snapshotKinds(t, d.mustCtr("-n", "k8s.io", "snapshots", "ls")); len(kinds) != 0 {
		t.Errorf("snapshots left after crictl rmi: %v", kinds)
	}

	// A second name made with ctr is one more tag of the same image;
	// removing by short ID removes every record.
	d.mustCrictl("pull", ref)
	d.mustCtr("-n", "k8s.io", "images", "tag", ref, "registry.k8s.io/e2e/busybox:alias")
	imgs := d.crictlImages()
	if len(imgs) != 1 || len(imgs[0].RepoTags) != 2 {
		t.Fatalf("after tagging with ctr: %+v, want one image with two tags", imgs)
	}
	short := strings.TrimPrefix(id, "sha256:")[:13]
	if out := d.mustCrictl("rmi", short); !strings.Contains(out, "Deleted: registry.k8s.io/e2e/busybox:alias") {
		t.Errorf("crictl rmi %s: %q", short, out)
	}
	if got := d.k8sImages(); len(got) != 0 {
		t.Errorf("records left after crictl rmi by ID: %v", got)
	}

	// Removing what is not there succeeds; its status is no image.
	client := runtime.NewImageServiceClient(d.client())
	ctx, cancel := context.WithTimeout(context.Background(), ctrTimeout)
	defer cancel()
	for _, name := range []string{ref, id} {
		if _, err := client.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: name}}); err != nil {
			t.Errorf("RemoveImage(%s) of a removed image: %v", name, err)
		}
		st, err := client.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: name}})
		if err != nil || st.GetImage() != nil {
			t.Errorf("ImageStatus(%s) of a removed image: %v, %v", name, st, err)
		}
	}
}

// htpasswd holds user berth, password s3cret (bcrypt, cost 4: the registry
// checks it at every request).
const (
	registryUser     = "berth"
	registryPassword = "s3cret"
	htpasswd         = "berth:$2b$04$gprhRATgDiPB0z96GNhdleADZBaaoNeYvXBpVCT5rphV.1l6maR1i\n"
)

// startAuthRegistry starts a docker-registry that requires basic auth
// (htpasswd); it is killed by its PID at cleanup.
func startAuthRegistry(t *testing.T) *testRegistry {
	t.Helper()
	requirements(t)
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Fatalf("docker-registry not found (%v): apt-get install docker-registry", err)
	}
	dir := t.TempDir()
	r := &testRegistry{t: t, Addr: freeAddr(t), Storage: filepath.Join(dir, "storage"), logPath: filepath.Join(dir, "registry.log")}
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte(htpasswd), 0o600); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n"+
		"auth:\n  htpasswd:\n    realm: berth-test\n    path: %s\n", r.Storage, r.Addr, filepath.Join(dir, "htpasswd"))
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(r.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	r.cmd = exec.Command(bin, "serve", filepath.Join(dir, "config.yml"))
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start docker-registry: %v", err)
	}
	r.exited = make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(r.exited) }()
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		<-r.exited
		if t.Failed() {
			t.Logf("registry %s log (tail):\n%s", r.Addr, tail(r.log(), 4<<10))
		}
	})
	eventually(t, 15*time.Second, func() error {
		resp, err := http.Get("http://" + r.Addr + "/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("GET /v2/ without credentials: %s, want 401", resp.Status)
		}
		return nil
	})
	return r
}

// TestCRIPullAuth: a registry requiring credentials refuses a pull
// without them; the request's credentials (--creds, --auth) get through.
func TestCRIPullAuth(t *testing.T) {
	t.Parallel()
	reg := startAuthRegistry(t)
	creds := registryUser + ":" + registryPassword
	hostsDir := t.TempDir()
	writeHosts(t, hostsDir, reg.Addr, fmt.Sprintf("server = %q\n", "http://"+reg.Addr))
	img, _ := pushCRIImage(t, reg.ref("private/app:1"), "", "--dest-creds", creds)
	d := startDaemon(t, withConfig(criConfig(t.TempDir(), hostsDir)))
	ref := reg.ref("private/app:1")

	stderr := d.crictlFails("pull", ref)
	for _, want := range []string{ref, "Unauthenticated", "credentials"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("pull without credentials: error lacks %q:\n%s", want, stderr)
		}
	}
	if stderr := d.crictlFails("pull", "--creds", registryUser+":wrong", ref); !strings.Contains(stderr, "Unauthenticated") {
		t.Errorf("pull with a wrong password: %s", stderr)
	}
	if out := d.mustCrictl("pull", "--creds", creds, ref); !strings.Contains(out, img.config.Digest.String()) {
		t.Errorf("crictl pull --creds: %q", out)
	}
	d.mustCrictl("rmi", ref)
	auth := base64.StdEncoding.EncodeToString([]byte(creds))
	if out := d.mustCrictl("pull", "--auth", auth, ref); !strings.Contains(out, img.config.Digest.String()) {
		t.Errorf("crictl pull --auth: %q", out)
	}
	if got := d.k8sImages(); !slices.Contains(got, ref) {
		t.Errorf("records after the authenticated pull: %v", got)
	}
}
