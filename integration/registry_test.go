package integration

// Pulls and pushes against the real Debian docker-registry on 127.0.0.1:
// ctr 1.6's client-side pull and berth's server-side one, hosts.toml
// routing (mirrors, capabilities, override_path, edits without restart),
// platform selection, broken registries, a crash mid-download, and a
// push/pull round trip. Images are built here, offline, from Debian's
// busybox-static and small synthetic layers, and pushed with skopeo.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// serverHosts is a hosts.toml sending everything to addr in plain HTTP.
func serverHosts(addr string) string { return fmt.Sprintf("server = %q\n", "http://"+addr) }

// imageTargets parses `ctr images ls` into REF -> DIGEST.
func imageTargets(t *testing.T, out string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, name := range imageNames(t, out) {
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == name {
				got[name] = f[2]
			}
		}
	}
	return got
}

// contentOf lists the digests in namespace ns's content store.
func contentOf(t *testing.T, d *daemon, ns string) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	for dgst := range contentLabels(t, d.mustCtr("-n", ns, "content", "ls")) {
		got[dgst] = true
	}
	return got
}

// wantImage checks that ns has image ref pointing at dgst.
func wantImage(t *testing.T, d *daemon, ns, ref string, dgst digest.Digest) {
	t.Helper()
	if got := imageTargets(t, d.mustCtr("-n", ns, "images", "ls"))[ref]; got != dgst.String() {
		t.Errorf("image %s in namespace %s has target %q, want %s", ref, ns, got, dgst)
	}
}

// wantSnapshots checks that each of chains is (or, with committed false,
// is not) a committed snapshot of ns.
func wantSnapshots(t *testing.T, d *daemon, ns string, committed bool, chains ...string) {
	t.Helper()
	snaps := snapshotKinds(t, d.mustCtr("-n", ns, "snapshots", "ls"))
	for _, c := range chains {
		if got := snaps[c] == "Committed"; got != committed {
			t.Errorf("snapshot %s in namespace %s committed = %v, want %v (snapshots: %v)", c, ns, got, committed, snaps)
		}
	}
}

// TestRegistryPull pulls one busybox image with ctr 1.6 (client-side,
// through berthd's services) and with berth (server-side, routed by a
// hosts.toml) into two namespaces: each sees only its own image, the
// blobs are stored once, and removing one namespace's image keeps the
// other's.
func TestRegistryPull(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	img := pushImage(t, reg, "library/busybox:1", busyboxLayer(t), filesLayer(t, map[string]string{"etc/motd": "berth\n"}))
	ref := reg.ref("library/busybox:1")
	chains := chainIDs(img.layers)
	d := startDaemon(t)

	d.mustCtr("-n", "ctr", "images", "pull", "--plain-http", ref)
	wantImage(t, d, "ctr", ref, img.manifest.Digest)
	wantSnapshots(t, d, "ctr", true, chains...)
	wantBusybox(t, d)

	hosts := t.TempDir()
	writeHosts(t, hosts, reg.Addr, serverHosts(reg.Addr))
	out := mustBerthCLI(t, d, "berth", "pull", "--hosts-dir", hosts, ref)
	if !strings.Contains(out, "Completed pull from "+ref) {
		t.Errorf("berth pull printed:\n%s\nwant a completion line", out)
	}
	wantImage(t, d, "berth", ref, img.manifest.Digest)
	wantSnapshots(t, d, "berth", true, chains...)
	if got := imageNames(t, d.mustCtr("-n", "other", "images", "ls")); len(got) != 0 {
		t.Errorf("images in namespace other = %q, want none", got)
	}
	for _, ns := range []string{"ctr", "berth"} {
		if got := imageNames(t, d.mustCtr("-n", ns, "images", "ls")); len(got) != 1 {
			t.Errorf("images in namespace %s = %q, want only %s", ns, got, ref)
		}
	}
	d.collectGarbage()
	if got := d.blobFiles(); len(got) != len(img.blobs()) {
		t.Errorf("blob files after pulling into two namespaces = %q, want the image's %d, stored once", got, len(img.blobs()))
	}

	d.mustCtr("-n", "ctr", "images", "rm", ref)
	d.collectGarbage()
	if got := imageNames(t, d.mustCtr("-n", "ctr", "images", "ls")); len(got) != 0 {
		t.Errorf("images in namespace ctr after rm = %q, want none", got)
	}
	if got := snapshotKinds(t, d.mustCtr("-n", "ctr", "snapshots", "ls")); len(got) != 0 {
		t.Errorf("snapshots in namespace ctr after rm and a collection = %v, want none", got)
	}
	if got := contentOf(t, d, "ctr"); len(got) != 0 {
		t.Errorf("content of namespace ctr after rm and a collection = %v, want none", got)
	}
	for _, dgst := range img.blobs() {
		if !exists(d.blobPath(dgst)) {
			t.Errorf("blob %s removed while namespace berth's image uses it", dgst)
		}
	}
	wantSnapshots(t, d, "berth", true, chains...)
}

// wantBusybox checks that busybox was unpacked, with its symlinks.
func wantBusybox(t *testing.T, d *daemon) {
	t.Helper()
	fi, err := os.Stat("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(d.Root, "io.containerd.snapshotter.v1.overlayfs", "snapshots", "*", "fs", "bin", "busybox"))
	if len(files) == 0 {
		t.Fatal("no bin/busybox in any overlayfs snapshot")
	}
	for _, f := range files {
		if got, err := os.Stat(f); err != nil || got.Size() != fi.Size() || got.Mode().Perm() != 0o755 {
			t.Errorf("unpacked %s: %v, %v; want %d bytes, mode 0755", f, got, err, fi.Size())
		}
		if target, err := os.Readlink(filepath.Join(filepath.Dir(f), "sh")); err != nil || target != "busybox" {
			t.Errorf("unpacked bin/sh -> %q, %v; want a symlink to busybox", target, err)
		}
	}
}

// TestMirrorFallThrough puts a dead mirror before the registry: the pull
// succeeds on the registry and berthd's log names the dead host; a pull
// that fails everywhere lists every host tried and why.
func TestMirrorFallThrough(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	img := pushImage(t, reg, "app:1", filesLayer(t, map[string]string{"app": "fall-through\n"}))
	dead := freeAddr(t)
	hosts := t.TempDir()
	writeHosts(t, hosts, reg.Addr, serverHosts(reg.Addr)+fmt.Sprintf(`
[host."http://%s"]
  capabilities = ["pull", "resolve"]
`, dead))
	d := startDaemon(t)

	mustBerthCLI(t, d, "mirror", "pull", "--hosts-dir", hosts, reg.ref("app:1"))
	wantImage(t, d, "mirror", reg.ref("app:1"), img.manifest.Digest)
	deadURL := "http://" + dead + "/v2"
	if log := d.log(); !strings.Contains(log, "registry host failed, trying the next one") || !strings.Contains(log, deadURL) {
		t.Errorf("berthd's log does not report falling through %s", deadURL)
	}

	stderr := berthCLIFails(t, d, "mirror", "pull", "--hosts-dir", hosts, reg.ref("app:missing"))
	for _, want := range []string{"tried 2 hosts", deadURL + " (mirror): ", "connection refused", "http://" + reg.Addr + "/v2: manifest unknown"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("failed pull's error %q lacks %q", stderr, want)
		}
	}
	if got := imageNames(t, d.mustCtr("-n", "mirror", "images", "ls")); !slices.Equal(got, []string{reg.ref("app:1")}) {
		t.Errorf("images after the failed pull = %q, want only the first", got)
	}
}

// TestMirrorPullOnlyNotPushed pushes through a hosts.toml whose mirror (a
// second real registry) may only pull: the mirror receives nothing and
// the registry gets the image.
func TestMirrorPullOnlyNotPushed(t *testing.T) {
	t.Parallel()
	server, mirror := startRegistry(t), startRegistry(t)
	d := startDaemon(t)
	const name = "example.com/berth/pushed:1"
	img := buildOCIArchive(t, name)
	importImage(t, d, "push", img.archive, "--no-unpack")
	hosts := t.TempDir()
	writeHosts(t, hosts, server.Addr, serverHosts(server.Addr)+fmt.Sprintf(`
[host."http://%s"]
  capabilities = ["pull"]
`, mirror.Addr))

	mustBerthCLI(t, d, "push", "push", "--hosts-dir", hosts, server.ref("pushed:1"), name)
	if got := server.manifestDigest("pushed", "1"); got.String() != img.blobs[0] {
		t.Errorf("registry has pushed:1 = %s, want %s", got, img.blobs[0])
	}
	for _, dgst := range img.blobs {
		if !exists(server.blobData(digest.Digest(dgst))) {
			t.Errorf("registry lacks blob %s after the push", dgst)
		}
	}
	if files := mirror.files(); len(files) != 0 {
		t.Errorf("pull-only mirror's storage after a push = %v, want empty", files)
	}
	if strings.Contains(mirror.log(), "/v2/pushed") {
		t.Errorf("pull-only mirror was sent requests for the pushed repository:\n%s", mirror.log())
	}
}

// TestHostsEditNoRestart points a registry name at registry A, pulls,
// edits hosts.toml to point it at registry B, which holds another image
// under the same name, and pulls again: berthd follows the edit without
// a restart.
func TestHostsEditNoRestart(t *testing.T) {
	t.Parallel()
	a, b := startRegistry(t), startRegistry(t)
	imgA := pushImage(t, a, "app:1", filesLayer(t, map[string]string{"whoami": "A\n"}))
	imgB := pushImage(t, b, "app:1", filesLayer(t, map[string]string{"whoami": "B\n"}))
	const registry, ref = "registry.berth.test", "registry.berth.test/app:1"
	hosts := t.TempDir()
	writeHosts(t, hosts, registry, serverHosts(a.Addr))
	d := startDaemon(t)
	pid := d.pid()

	mustBerthCLI(t, d, "edit", "pull", "--hosts-dir", hosts, ref)
	wantImage(t, d, "edit", ref, imgA.manifest.Digest)
	writeHosts(t, hosts, registry, serverHosts(b.Addr))
	mustBerthCLI(t, d, "edit", "pull", "--hosts-dir", hosts, ref)
	wantImage(t, d, "edit", ref, imgB.manifest.Digest)
	if d.pid() != pid {
		t.Errorf("berthd restarted (pid %d, was %d)", d.pid(), pid)
	}
}

// TestHostsOverridePath serves the registry API under /api/registry
// through a proxy: with override_path the mirror URL is the API root;
// without it "/v2" is appended, the mirror answers 404 and the pull falls
// through to the (dead) server.
func TestHostsOverridePath(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	img := pushImage(t, reg, "app:1", filesLayer(t, map[string]string{"app": "override\n"}))
	proxy := startProxy(t, reg)
	proxy.serveAt("/api/registry")
	dead := freeAddr(t)
	const registry, ref = "registry.berth.test", "registry.berth.test/app:1"
	mirror := func(override bool) string {
		return serverHosts(dead) + fmt.Sprintf(`
[host."http://%s/api/registry"]
  capabilities = ["pull", "resolve"]
  override_path = %v
`, proxy.Addr, override)
	}
	hosts := t.TempDir()
	d := startDaemon(t)

	writeHosts(t, hosts, registry, mirror(true))
	mustBerthCLI(t, d, "override", "pull", "--hosts-dir", hosts, ref)
	wantImage(t, d, "override", ref, img.manifest.Digest)

	writeHosts(t, hosts, registry, mirror(false))
	stderr := berthCLIFails(t, d, "appended", "pull", "--hosts-dir", hosts, ref)
	for _, want := range []string{"http://" + proxy.Addr + "/api/registry/v2 (mirror): manifest unknown", "http://" + dead + "/v2: connect: connection refused"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("pull without override_path: error %q lacks %q", stderr, want)
		}
	}

	// The registry's own root spelled out as the server, with override_path.
	writeHosts(t, hosts, reg.Addr, fmt.Sprintf("server = %q\noverride_path = true\n", "http://"+reg.Addr+"/v2"))
	mustBerthCLI(t, d, "server", "pull", "--hosts-dir", hosts, reg.ref("app:1"))
	wantImage(t, d, "server", reg.ref("app:1"), img.manifest.Digest)
}

// TestPullMultiPlatform pulls an index of a linux/amd64 and a linux/arm64
// image: by default only the host's platform is fetched and unpacked;
// --platform fetches the other; --all-platforms fetches both and unpacks
// only the host's.
func TestPullMultiPlatform(t *testing.T) {
	t.Parallel()
	native, other := runtime.GOARCH, "arm64"
	switch native {
	case "amd64":
	case "arm64":
		other = "amd64"
	default:
		t.Fatalf("the multi-platform image has amd64 and arm64 images; this host is %s", native)
	}
	reg := startRegistry(t)
	l := newLayout(t)
	images := map[string]regImage{
		native: l.image(ocispec.Platform{OS: "linux", Architecture: native},
			busyboxLayer(t), filesLayer(t, map[string]string{"etc/arch": native + "\n"})),
		other: l.image(ocispec.Platform{OS: "linux", Architecture: other},
			filesLayer(t, map[string]string{"bin/tool": "built for " + other + "\n"}), filesLayer(t, map[string]string{"etc/arch": other + "\n"})),
	}
	index := l.index(images["amd64"], images["arm64"])
	l.tag("multi", index)
	l.push("multi", reg.ref("multi:1"))
	if got := reg.manifestDigest("multi", "1"); got != index.Digest {
		t.Fatalf("registry has multi:1 = %s, want the index %s", got, index.Digest)
	}
	ref := reg.ref("multi:1")
	hosts := t.TempDir()
	writeHosts(t, hosts, reg.Addr, serverHosts(reg.Addr))
	d := startDaemon(t)

	fetched := func(ns string, want, notWant []string) {
		t.Helper()
		got := contentOf(t, d, ns)
		for _, dgst := range want {
			if !got[dgst] {
				t.Errorf("namespace %s lacks %s after the pull", ns, dgst)
			}
		}
		for _, dgst := range notWant {
			if got[dgst] {
				t.Errorf("namespace %s has %s, of a platform it did not pull", ns, dgst)
			}
		}
	}
	nativeBlobs, otherBlobs := images[native].blobs(), images[other].blobs()

	mustBerthCLI(t, d, "host", "pull", "--hosts-dir", hosts, ref)
	wantImage(t, d, "host", ref, index.Digest)
	fetched("host", append([]string{index.Digest.String()}, nativeBlobs...), otherBlobs)
	wantSnapshots(t, d, "host", true, chainIDs(images[native].layers)...)
	wantSnapshots(t, d, "host", false, chainIDs(images[other].layers)...)

	mustBerthCLI(t, d, "other", "pull", "--hosts-dir", hosts, "--platform", "linux/"+other, ref)
	wantImage(t, d, "other", ref, index.Digest)
	fetched("other", append([]string{index.Digest.String()}, otherBlobs...), nativeBlobs)

	mustBerthCLI(t, d, "all", "pull", "--hosts-dir", hosts, "--all-platforms", ref)
	wantImage(t, d, "all", ref, index.Digest)
	fetched("all", append(append([]string{index.Digest.String()}, nativeBlobs...), otherBlobs...), nil)
	wantSnapshots(t, d, "all", true, chainIDs(images[native].layers)...)
	wantSnapshots(t, d, "all", false, chainIDs(images[other].layers)...)
}

// TestPullFaults breaks one thing at a time in the registry: a blob whose
// bytes do not match its digest, a truncated blob, a manifest that is not
// JSON, a layer escaping its root with ../etc/passwd. Each pull fails
// naming the culprit and leaves nothing behind; once the fault is gone
// the same pull succeeds.
func TestPullFaults(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	proxy := startProxy(t, reg)
	hosts := t.TempDir()
	writeHosts(t, hosts, proxy.Addr, serverHosts(proxy.Addr))
	d := startDaemon(t)
	pull := func(ns, repoTag string) result {
		return runBerthCLI(t, d, ns, "pull", "--hosts-dir", hosts, proxy.Addr+"/"+repoTag)
	}
	// image pushes two layers unique to the fault; the second is the bad one.
	image := func(name string, bad regLayer) regImage {
		return pushImage(t, reg, name+":1", filesLayer(t, map[string]string{"base": name + "\n"}), bad)
	}
	padding := strings.Repeat("berth ", 4096)

	t.Run("digest", func(t *testing.T) {
		img := image("digest", filesLayer(t, map[string]string{"data": "digest " + padding}))
		bad := img.layers[1].desc.Digest
		corrupt := slices.Clone(img.layers[1].blob)
		corrupt[len(corrupt)/2] ^= 0xff
		restore := replaceBlob(t, reg, bad, corrupt)
		failedPull(t, d, pull("digest", "digest:1"), refused{ns: "digest", bad: bad, badChain: chainIDs(img.layers)[1]})
		restore()
		mustPull(t, d, pull("digest", "digest:1"), "digest", proxy.Addr+"/digest:1", img)
	})
	t.Run("truncated", func(t *testing.T) {
		img := image("truncated", filesLayer(t, map[string]string{"data": "truncated " + padding}))
		bad := img.layers[1].desc.Digest
		half := img.layers[1].blob[:len(img.layers[1].blob)/2]
		restore := replaceBlob(t, reg, bad, half)
		failedPull(t, d, pull("truncated", "truncated:1"), refused{ns: "truncated", bad: bad, badChain: chainIDs(img.layers)[1]},
			fmt.Sprintf("is %d bytes, the descriptor says %d", len(half), img.layers[1].desc.Size))
		restore()
		mustPull(t, d, pull("truncated", "truncated:1"), "truncated", proxy.Addr+"/truncated:1", img)
	})
	t.Run("manifest", func(t *testing.T) {
		img := image("manifest", filesLayer(t, map[string]string{"data": "manifest\n"}))
		bad := proxy.fakeManifest("manifest", "1", []byte(`{"schemaVersion": 2, "mediaType": "`+ocispec.MediaTypeImageManifest+`", "config": {`))
		failedPull(t, d, pull("manifest", "manifest:1"), refused{ns: "manifest", bad: bad}, "malformed JSON")
		proxy.clearFaults()
		mustPull(t, d, pull("manifest", "manifest:1"), "manifest", proxy.Addr+"/manifest:1", img)
	})
	t.Run("escape", func(t *testing.T) {
		before := fileDigest(t, "/etc/passwd")
		img := image("escape", filesLayer(t, map[string]string{"../etc/passwd": "root::0:0:escaped:/:/bin/sh\n"}))
		bad := img.layers[1].desc.Digest
		failedPull(t, d, pull("escape", "escape:1"), refused{ns: "escape", bad: bad, badChain: chainIDs(img.layers)[1], sound: true}, `"../etc/passwd"`)
		if fileDigest(t, "/etc/passwd") != before {
			t.Fatal("/etc/passwd changed during the pull of a layer with ../etc/passwd")
		}
		wantNoEscaped(t, d.Root)
		// The fault removed: the tag now names a sound image.
		fixed := image("escape", filesLayer(t, map[string]string{"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n"}))
		mustPull(t, d, pull("escape", "escape:1"), "escape", proxy.Addr+"/escape:1", fixed)
	})
}

// replaceBlob writes b in place of blob dgst in the registry's storage;
// the function returned puts the original back.
func replaceBlob(t *testing.T, reg *testRegistry, dgst digest.Digest, b []byte) func() {
	t.Helper()
	path := reg.blobData(dgst)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.WriteFile(path, orig, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// refused is what a failed pull must have refused: the blob bad, in a
// namespace of its own, with the snapshot badChain of the layer ("" for
// a manifest).
type refused struct {
	ns       string
	bad      digest.Digest
	badChain string
	// sound: bad's bytes verify, the fault is in what they hold; the
	// content store may keep it until the next collection.
	sound bool
}

// failedPull checks that the pull r failed with an error containing the
// bad blob's digest and every one of wants, and left nothing: no image,
// no lease, no committed snapshot of the bad layer, no bad blob (sound
// ones: after a collection), and, after a collection, nothing at all in
// the namespace.
func failedPull(t *testing.T, d *daemon, r result, f refused, wants ...string) {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("pull succeeded, want an error: %s", r)
	}
	for _, want := range append([]string{f.bad.String()}, wants...) {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("pull's error %q lacks %q", r.stderr, want)
		}
	}
	if got := imageNames(t, d.mustCtr("-n", f.ns, "images", "ls")); len(got) != 0 {
		t.Errorf("images after the failed pull = %q, want none", got)
	}
	if got := leaseIDs(t, d.mustCtr("-n", f.ns, "leases", "ls")); len(got) != 0 {
		t.Errorf("leases after the failed pull = %q, want none", got)
	}
	if f.badChain != "" {
		wantSnapshots(t, d, f.ns, false, f.badChain)
	}
	if !f.sound && exists(d.blobPath(f.bad.String())) {
		t.Errorf("the bad blob %s was committed", f.bad)
	}
	d.collectGarbage()
	wantEmpty(t, d, f.ns, "after the failed pull and a collection")
	if exists(d.blobPath(f.bad.String())) {
		t.Errorf("blob %s on disk after the failed pull and a collection", f.bad)
	}
}

// mustPull checks that a pull into ns succeeded with img, unpacked.
func mustPull(t *testing.T, d *daemon, r result, ns, ref string, img regImage) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("pull after the fault was removed: %s", r)
	}
	wantImage(t, d, ns, ref, img.manifest.Digest)
	wantSnapshots(t, d, ns, true, chainIDs(img.layers)...)
}

func fileDigest(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// wantNoEscaped checks that no file of root holds the escaping layer's
// line.
func wantNoEscaped(t *testing.T, root string) {
	t.Helper()
	_ = filepath.WalkDir(root, func(path string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() && e.Name() == "passwd" {
			if b, _ := os.ReadFile(path); strings.Contains(string(b), "escaped") {
				t.Errorf("%s holds the escaping layer's passwd", path)
			}
		}
		return nil
	})
}

// TestPullKilled SIGKILLs berthd while it pulls a big layer served slowly,
// restarts it and pulls again: the pull succeeds, nothing half-written is
// committed, and a collection leaves no snapshot directory unaccounted.
func TestPullKilled(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	proxy := startProxy(t, reg)
	big := gzipLayer(t, tarOf(t, map[string]string{"big": string(randomBlob(t, 64<<20))}))
	img := pushImage(t, reg, "big:1", filesLayer(t, map[string]string{"base": "killed\n"}), big)
	chains := chainIDs(img.layers)
	proxy.throttle(big.desc.Digest, 8<<20) // 8 s for the whole layer
	hosts := t.TempDir()
	writeHosts(t, hosts, proxy.Addr, serverHosts(proxy.Addr))
	ref := proxy.Addr + "/big:1"
	d := startDaemon(t)

	killMidPull(t, d, big.desc.Size, "killed", "pull", "--hosts-dir", hosts, ref)

	// The restarted berthd releases the dead pull's lease: a collection
	// takes its half-written ingest and its snapshots, even the active
	// one the big layer was being unpacked into.
	d.start()
	if got := leaseIDs(t, d.mustCtr("-n", "killed", "leases", "ls")); len(got) != 0 {
		t.Errorf("leases after the restart = %q, want the killed pull's released", got)
	}
	if !strings.Contains(d.log(), "released the lease of a pull interrupted by a previous berthd") {
		t.Error("berthd's log does not report releasing the killed pull's lease")
	}
	d.collectGarbage()
	wantEmpty(t, d, "killed", "after the restart and a collection")
	proxy.clearFaults()
	mustBerthCLI(t, d, "killed", "pull", "--hosts-dir", hosts, ref)
	wantImage(t, d, "killed", ref, img.manifest.Digest)
	wantSnapshots(t, d, "killed", true, chains...)
	if got := fileDigest(t, d.blobPath(big.desc.Digest.String())); "sha256:"+got != big.desc.Digest.String() {
		t.Errorf("the big layer's blob on disk has digest sha256:%s, want %s", got, big.desc.Digest)
	}
	d.collectGarbage()
	for key, kind := range snapshotKinds(t, d.mustCtr("-n", "killed", "snapshots", "ls")) {
		if kind != "Committed" {
			t.Errorf("snapshot %s is %s after the pull and a collection: a half-unpacked layer", key, kind)
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(d.Root, "io.containerd.snapshotter.v1.overlayfs", "snapshots", "*"))
	if n := countSnapshots(t, d); len(dirs) != n {
		t.Errorf("%d snapshot directories for %d snapshots after a collection: %q", len(dirs), n, dirs)
	}
}

// killMidPull runs `berth -n ns args...` (a pull of a layer of size
// bytes) and SIGKILLs berthd once 8 MiB of the layer have arrived.
func killMidPull(t *testing.T, d *daemon, size int64, ns string, args ...string) {
	t.Helper()
	cli := berthCmd(t.Context(), t, d, ns, args...)
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		if n := largestIngest(t, d); n < 8<<20 {
			return fmt.Errorf("largest ingest holds %d bytes, want 8 MiB before the kill", n)
		}
		return nil
	})
	d.kill()
	if err := cli.Wait(); err == nil {
		t.Error("berth pull succeeded although berthd was killed midway")
	}
	if n := largestIngest(t, d); n >= size {
		t.Fatalf("the layer's ingest holds %d of its %d bytes at the kill, want it half-written", n, size)
	}
}

// wantEmpty checks that namespace ns holds no blob, ingest or snapshot.
func wantEmpty(t *testing.T, d *daemon, ns, when string) {
	t.Helper()
	if got := contentOf(t, d, ns); len(got) != 0 {
		t.Errorf("content %s = %v, want none", when, got)
	}
	if got := activeSizes(t, d.mustCtr("-n", ns, "content", "active")); len(got) != 0 {
		t.Errorf("ingests %s = %v, want none", when, got)
	}
	if got := snapshotKinds(t, d.mustCtr("-n", ns, "snapshots", "ls")); len(got) != 0 {
		t.Errorf("snapshots %s = %v, want none", when, got)
	}
}

// largestIngest is the size of the largest ingest's data on disk.
func largestIngest(t *testing.T, d *daemon) int64 {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(d.Root, "io.containerd.content.v1.content", "ingest", "*", "data"))
	var most int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			most = max(most, fi.Size())
		}
	}
	return most
}

// countSnapshots counts the snapshots of every namespace.
func countSnapshots(t *testing.T, d *daemon) int {
	t.Helper()
	n := 0
	for _, ns := range strings.Fields(d.mustCtr("namespaces", "ls", "-q")) {
		n += len(snapshotKinds(t, d.mustCtr("-n", ns, "snapshots", "ls")))
	}
	return n
}

// TestPushRoundTrip pushes an image with berth, reads it back with skopeo
// and with a second berthd on a fresh root, and pushes it again, which
// uploads nothing.
func TestPushRoundTrip(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	const name = "example.com/berth/roundtrip:1"
	l := newLayout(t)
	img := l.image(hostPlatform(), busyboxLayer(t), filesLayer(t, map[string]string{"etc/motd": "round trip\n"}))
	d := startDaemon(t)
	importImage(t, d, "rt", l.archive(name, img.manifest))
	hosts := t.TempDir()
	writeHosts(t, hosts, reg.Addr, serverHosts(reg.Addr))
	ref := reg.ref("roundtrip:1")

	mustBerthCLI(t, d, "rt", "push", "--hosts-dir", hosts, ref, name)
	if got := reg.manifestDigest("roundtrip", "1"); got != img.manifest.Digest {
		t.Errorf("registry has roundtrip:1 = %s, want %s", got, img.manifest.Digest)
	}
	raw := skopeo(t, "inspect", "--raw", "--tls-verify=false", "docker://"+ref)
	if got := digest.FromString(raw); got != img.manifest.Digest {
		t.Errorf("skopeo inspect --raw: manifest digest %s, want %s", got, img.manifest.Digest)
	}
	var info struct {
		Digest       string
		Layers       []string
		Architecture string
	}
	if err := json.Unmarshal([]byte(skopeo(t, "inspect", "--tls-verify=false", "docker://"+ref)), &info); err != nil {
		t.Fatalf("skopeo inspect: %v", err)
	}
	wantLayers := []string{img.layers[0].desc.Digest.String(), img.layers[1].desc.Digest.String()}
	if info.Digest != img.manifest.Digest.String() || !slices.Equal(info.Layers, wantLayers) || info.Architecture != runtime.GOARCH {
		t.Errorf("skopeo inspect = %+v, want digest %s, layers %v, architecture %s", info, img.manifest.Digest, wantLayers, runtime.GOARCH)
	}

	before, uploads := reg.files(), strings.Count(reg.log(), "blobs/uploads")
	mustBerthCLI(t, d, "rt", "push", "--hosts-dir", hosts, ref, name)
	if after := reg.files(); !maps.Equal(before, after) {
		t.Errorf("registry storage changed on a second push:\nbefore %v\nafter  %v", before, after)
	}
	if got := strings.Count(reg.log(), "blobs/uploads"); got != uploads {
		t.Errorf("a second push opened %d uploads, want none", got-uploads)
	}

	fresh := startDaemon(t)
	mustBerthCLI(t, fresh, "fresh", "pull", "--hosts-dir", hosts, ref)
	wantImage(t, fresh, "fresh", ref, img.manifest.Digest)
	wantSnapshots(t, fresh, "fresh", true, chainIDs(img.layers)...)
	got := contentOf(t, fresh, "fresh")
	for _, dgst := range img.blobs() {
		if !got[dgst] {
			t.Errorf("the fresh root lacks %s after pulling what berth pushed", dgst)
		}
	}
}
