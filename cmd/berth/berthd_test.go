package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestImageCommandsAgainstBerthd runs the image, snapshot and archive
// commands against a berthd built from this tree and started on a
// temporary root: unpacking needs berthd's Diff service, which the
// containerd 1.6 of TestCLIAgainstDaemon implements differently.
func TestImageCommandsAgainstBerthd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("berthd's overlayfs snapshotter needs root: run the tests as root (make test does)")
	}
	root, address := startBerthd(t)
	c := cli{t: t, bin: buildCLI(t), address: address}

	img := newTestImage(t,
		gzipLayer(t, buildTar(t, tarEntry{name: "etc/"}, tarEntry{name: "etc/a", body: "hello"},
			tarEntry{name: "gone", body: "bye"})),
		plainLayer(buildTar(t, tarEntry{name: "etc/b", body: "world"}, tarEntry{name: ".wh.gone"})))
	const name = "example.com/berth/test:1"
	dir := t.TempDir()
	archive := filepath.Join(dir, "oci.tar")
	writeFile(t, archive, img.ociArchive(t, name))

	t.Run("import", func(t *testing.T) { testImportOCI(t, c, root, img, name, archive) })
	t.Run("snapshots", func(t *testing.T) { testSnapshots(t, c, img) })
	t.Run("export", func(t *testing.T) { testExportReimport(t, c, img, name, dir) })
	t.Run("docker", func(t *testing.T) { testImportDocker(t, c) })
	t.Run("tag", func(t *testing.T) { testTag(t, c, img, name) })
	t.Run("escape", func(t *testing.T) { testImportEscape(t, c) })
	t.Run("platforms", func(t *testing.T) { testPlatforms(t, c, dir) })
}

func testImportOCI(t *testing.T, c cli, root string, img testImage, name, archive string) {
	if out := c.ok(nil, "-n", "one", "image", "import", archive); !hasRow(out, name, img.manifestDesc().Digest.String()) {
		t.Errorf("import printed:\n%s", out)
	}
	platform := "linux/" + runtime.GOARCH
	if out := c.ok(nil, "-n", "one", "images", "ls"); !hasRow(out, name, humanSize(img.size()), platform) {
		t.Errorf("images ls lacks %s with its size and platform:\n%s", name, out)
	}
	var list []imageView
	c.okJSON(&list, "-n", "one", "images", "ls", "--format", "json")
	if len(list) != 1 || list[0].ImageSize != img.size() || strings.Join(list[0].Platforms, ",") != platform {
		t.Errorf("images ls json: %+v, want size %d", list, img.size())
	}
	v := inspectOne(t, c, "one", name)
	if len(v.Manifests) != 1 {
		t.Fatalf("inspect: %d manifests, want 1", len(v.Manifests))
	}
	m := v.Manifests[0]
	chain := img.chainIDs()
	if !m.Present || !m.Unpacked || m.ChainID != chain[1].String() || m.Platform != platform ||
		len(m.Layers) != 2 || m.Size != img.size() || v.TotalSize != img.size()+img.manifestDesc().Size {
		t.Errorf("inspect: %+v", v)
	}
	for i, l := range m.Layers {
		want := img.layers[i].desc()
		if l.Digest != want.Digest.String() || l.Size != want.Size || !l.Present ||
			l.DiffID != digest.FromBytes(img.layers[i].diff).String() {
			t.Errorf("layer %d: %+v, want %s", i, l, want.Digest)
		}
	}
	out := c.ok(nil, "-n", "one", "image", "inspect", name)
	for _, want := range []string{"Unpacked: true (overlayfs)", "Layer 2:", "Chain ID: " + chain[1].String()} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
			t.Errorf("inspect table lacks %q:\n%s", want, out)
		}
	}
	checkWhiteout(t, root)
}

// checkWhiteout looks through berthd's root for the unpacked layers: the
// lower one holds "gone", the upper one its overlay whiteout, a 0/0
// character device.
func checkWhiteout(t *testing.T, root string) {
	var regular, whiteout bool
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() != "gone" {
			return nil
		}
		info, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		if info.Mode().IsRegular() {
			regular = true
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && info.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0 {
			whiteout = true
		}
		return nil
	})
	if !regular || !whiteout {
		t.Errorf("in %s: a regular file gone: %v, a whiteout for it: %v", root, regular, whiteout)
	}
}

func inspectOne(t *testing.T, c cli, ns, name string) imageInspectView {
	t.Helper()
	var views []imageInspectView
	c.okJSON(&views, "-n", ns, "images", "inspect", name, "--format", "json")
	if len(views) != 1 {
		t.Fatalf("inspect %s printed %d images", name, len(views))
	}
	return views[0]
}

func testSnapshots(t *testing.T, c cli, img testImage) {
	chain := img.chainIDs()
	var snaps []snapshotView
	c.okJSON(&snaps, "-n", "one", "snapshots", "ls", "--format", "json")
	if len(snaps) != 2 {
		t.Fatalf("snapshots: %+v", snaps)
	}
	for _, s := range snaps {
		want := map[string]string{chain[0].String(): "", chain[1].String(): chain[0].String()}
		if parent, ok := want[s.Key]; !ok || s.Parent != parent || s.Kind != "Committed" {
			t.Errorf("snapshot %+v, want the chain %s", s, chain)
		}
	}
	tree := c.ok(nil, "-n", "one", "snapshot", "tree")
	if want := fmt.Sprintf(" %s\n  \\_ %s\n", chain[0], chain[1]); tree != want {
		t.Errorf("tree:\n%s\nwant:\n%s", tree, want)
	}
	if out := c.ok(nil, "-n", "one", "snapshots", "info", chain[1].String()); !strings.Contains(out, chain[0].String()) {
		t.Errorf("info lacks the parent:\n%s", out)
	}
	var usage []usageView
	c.okJSON(&usage, "-n", "one", "snapshots", "usage", "--format", "json")
	if len(usage) != 2 || usage[0].Inodes == 0 {
		t.Errorf("usage: %+v", usage)
	}
	if errOut := c.fail(nil, "-n", "one", "snapshots", "rm", chain[0].String()); !strings.Contains(errOut, chain[0].String()) {
		t.Errorf("rm of a parent said %q", errOut)
	}
	if errOut := c.fail(nil, "-n", "one", "images", "inspect", "--snapshotter", "nosuch", "x"); !strings.Contains(errOut, "nosuch") {
		t.Errorf("inspect with an unknown snapshotter said %q", errOut)
	}
}

func testExportReimport(t *testing.T, c cli, img testImage, name, dir string) {
	out := filepath.Join(dir, "export.tar")
	c.ok(nil, "-n", "one", "image", "export", out, name)
	exported, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, exported)
	for _, want := range []string{"oci-layout", "index.json", "blobs/sha256/" + img.manifestDesc().Digest.Encoded(),
		"blobs/sha256/" + img.layers[1].desc().Digest.Encoded()} {
		if !names[want] {
			t.Errorf("export lacks %s: %v", want, names)
		}
	}
	if stdout := c.ok(nil, "-n", "one", "image", "export", "-", name); stdout != string(exported) {
		t.Error("export to standard output differs from the file")
	}
	c.ok(nil, "-n", "two", "image", "import", out)
	first, second := inspectOne(t, c, "one", name), inspectOne(t, c, "two", name)
	if first.Target != second.Target || len(second.Manifests) != 1 || !second.Manifests[0].Unpacked ||
		fmt.Sprint(first.Manifests[0].Layers) != fmt.Sprint(second.Manifests[0].Layers) {
		t.Errorf("re-import differs:\n%+v\n%+v", first, second)
	}
	if errOut := c.fail(nil, "-n", "one", "image", "export", filepath.Join(dir, "none.tar"), "missing:1"); !strings.Contains(errOut, "not found") {
		t.Errorf("export of a missing image said %q", errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "none.tar")); !os.IsNotExist(err) {
		t.Errorf("failed export left a file: %v", err)
	}
}

func tarNames(t *testing.T, b []byte) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		names[hdr.Name] = true
	}
	return names
}

func testImportDocker(t *testing.T, c cli) {
	img := newTestImage(t,
		plainLayer(buildTar(t, tarEntry{name: "bin/"}, tarEntry{name: "bin/sh", body: "#!"})),
		plainLayer(buildTar(t, tarEntry{name: "bin/ls", body: "ls"})))
	archive := gzipBytes(t, img.dockerArchive(t, "berth-docker-test:2"))
	const name = "docker.io/library/berth-docker-test:2"
	stdout, stderr, code := c.run(bytes.NewReader(archive), "-n", "docker", "image", "import", "-")
	if code != 0 || !hasRow(stdout, name, img.manifestDesc().Digest.String(), img.chainIDs()[1].String()) {
		t.Fatalf("docker import: exit %d\n%s%s", code, stdout, stderr)
	}
	v := inspectOne(t, c, "docker", name)
	if v.Target.Digest != img.manifestDesc().Digest.String() || !v.Manifests[0].Unpacked {
		t.Errorf("docker image: %+v", v)
	}
}

func testTag(t *testing.T, c cli, img testImage, name string) {
	dgst := img.manifestDesc().Digest.String()
	c.ok(nil, "-n", "one", "tag", name, "example.com/berth/copy:1", "example.com/berth/copy:2")
	if out := c.ok(nil, "-n", "one", "images", "ls"); !hasRow(out, "example.com/berth/copy:2", dgst) {
		t.Errorf("ls after tag:\n%s", out)
	}
	if errOut := c.fail(nil, "-n", "one", "images", "tag", name, "example.com/berth/copy:1"); !strings.Contains(errOut, "--force") {
		t.Errorf("tag onto an existing name said %q", errOut)
	}
	c.ok(nil, "-n", "one", "images", "tag", "--force", name, "example.com/berth/copy:1")
	c.ok(nil, "-n", "one", "images", "rm", "example.com/berth/copy:1", "example.com/berth/copy:2")
	var list []imageView
	c.okJSON(&list, "-n", "one", "images", "ls", "--format", "json")
	if len(list) != 1 || list[0].Name != name {
		t.Errorf("after rm: %+v", list)
	}
}

// testImportEscape imports an image whose second layer writes "../x": the
// import fails naming the entry, and the lease takes the first layer's
// committed snapshot and every blob with it.
func testImportEscape(t *testing.T, c cli) {
	img := newTestImage(t,
		plainLayer(buildTar(t, tarEntry{name: "ok", body: "fine"})),
		plainLayer(buildTar(t, tarEntry{name: "../x", body: "escaped"})))
	stdout, stderr, code := c.run(bytes.NewReader(img.ociArchive(t, "example.com/berth/evil:1")), "-n", "evil", "image", "import", "-")
	if code != 1 || !strings.Contains(stderr, `"../x"`) || stdout != "" {
		t.Errorf("import of an escaping layer: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if out := c.ok(nil, "-n", "evil", "snapshots", "ls", "-q"); out != "" {
		t.Errorf("snapshots left behind:\n%s", out)
	}
	if out := c.ok(nil, "-n", "evil", "images", "ls", "-q"); out != "" {
		t.Errorf("images left behind:\n%s", out)
	}
	if out := c.ok(nil, "-n", "evil", "content", "ls", "-q"); out != "" {
		t.Errorf("blobs left behind:\n%s", out)
	}

	// A blob whose bytes are not what its path names is refused too.
	entry := blobEntry([]byte("the real bytes"))
	entry.body = "other bytes"
	bad := buildTar(t, tarEntry{name: "oci-layout", body: `{"imageLayoutVersion":"1.0.0"}`}, entry,
		tarEntry{name: "index.json", body: `{"schemaVersion":2,"manifests":[]}`})
	errOut := c.fail(bytes.NewReader(bad), "-n", "evil", "image", "import", "-")
	if !strings.Contains(errOut, entry.name) {
		t.Errorf("import of a corrupt blob said %q", errOut)
	}
}

// testPlatforms imports a two-platform index whole, then exports it with
// the other platform's manifest gone: a warning, unless --all-platforms.
func testPlatforms(t *testing.T, c cli, dir string) {
	other := "arm64"
	if runtime.GOARCH == other {
		other = "amd64"
	}
	local := newTestImage(t, plainLayer(buildTar(t, tarEntry{name: "local", body: "here"})))
	remote := newTestImageFor(t, other, plainLayer(buildTar(t, tarEntry{name: "remote", body: "there"})))
	archive, index := indexArchive(t, "example.com/berth/multi:1", local, remote)
	c.ok(bytes.NewReader(archive), "-n", "multi", "image", "import", "--all-platforms", "-")
	want := "linux/" + runtime.GOARCH + ",linux/" + other
	if other < runtime.GOARCH {
		want = "linux/" + other + ",linux/" + runtime.GOARCH
	}
	var list []imageView
	c.okJSON(&list, "-n", "multi", "images", "ls", "--format", "json")
	if len(list) != 1 || list[0].Digest != index.Digest.String() || list[0].ImageSize != local.size() ||
		strings.Join(list[0].Platforms, ",") != want {
		t.Errorf("images ls: %+v, want platforms %s and size %d", list, want, local.size())
	}
	c.ok(nil, "-n", "multi", "content", "rm", remote.manifestDesc().Digest.String())
	v := inspectOne(t, c, "multi", "example.com/berth/multi:1")
	if len(v.Manifests) != 2 || !v.Manifests[0].Unpacked || v.Manifests[1].Present || v.Manifests[1].Platform != "linux/"+other {
		t.Errorf("inspect after removing the %s manifest: %+v", other, v)
	}
	out := filepath.Join(dir, "multi.tar")
	_, stderr, code := c.run(nil, "-n", "multi", "image", "export", out, "example.com/berth/multi:1")
	if code != 0 || !strings.Contains(stderr, "warning") || !strings.Contains(stderr, remote.manifestDesc().Digest.String()) {
		t.Errorf("export with a platform missing: exit %d, stderr %q", code, stderr)
	}
	b, _ := os.ReadFile(out)
	if names := tarNames(t, b); !names["blobs/sha256/"+local.layers[0].desc().Digest.Encoded()] ||
		names["blobs/sha256/"+remote.manifestDesc().Digest.Encoded()] {
		t.Errorf("export holds %v", names)
	}
	errOut := c.fail(nil, "-n", "multi", "image", "export", "--all-platforms", filepath.Join(dir, "all.tar"), "example.com/berth/multi:1")
	if !strings.Contains(errOut, "not found") {
		t.Errorf("export --all-platforms with a platform missing said %q", errOut)
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// startBerthd builds berthd from this tree and runs it on a temporary root
// with no config file until the test ends; it returns the root and socket.
func startBerthd(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "berthd")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/berth-dev/berth/cmd/berthd").CombinedOutput(); err != nil {
		t.Fatalf("build berthd: %v\n%s", err, out)
	}
	root, sock, logPath := filepath.Join(dir, "root"), filepath.Join(dir, "b.sock"), filepath.Join(dir, "berthd.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--root", root, "--state", filepath.Join(dir, "state"), "--address", sock,
		"--config", filepath.Join(dir, "none.toml"))
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start berthd: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); log.Close(); close(exited) }()
	t.Cleanup(func() {
		stopProcess(t, cmd.Process, exited)
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("berthd log:\n%s", b)
		}
	})
	waitForSocket(t, sock, exited, logPath)
	return root, sock
}
