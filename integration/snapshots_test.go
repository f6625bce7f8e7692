package integration

import (
	"archive/tar"
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// snapshotters are the snapshotters every snapshot test runs against.
var snapshotters = []string{"overlayfs", "native"}

// tarEntry is one entry of a layer that layerTar writes.
type tarEntry struct {
	hdr  tar.Header
	data string
}

func dirEntry(name string, mode int64) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode}}
}

func fileEntry(name, data string, mode int64) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}, data: data}
}

func symlinkEntry(name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func hardlinkEntry(name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}}
}

// whiteoutEntry hides name of the layers below.
func whiteoutEntry(name string) tarEntry {
	dir, base := filepath.Split(name)
	return fileEntry(dir+".wh."+base, "", 0o644)
}

// layerTar returns an uncompressed layer of entries, in order, stamped
// with a fixed time.
func layerTar(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf strings.Builder
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		hdr.ModTime = time.Unix(1700000000, 0)
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatalf("layer entry %q: %v", hdr.Name, err)
		}
		if _, err := io.WriteString(tw, e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return []byte(buf.String())
}

// layeredImage is an OCI archive of an image with uncompressed layers.
type layeredImage struct {
	name    string
	archive string
	// chain are the chain IDs of the layers, bottom first: the names of
	// the committed snapshots an unpack makes.
	chain []string
}

// top is the chain ID of the whole image.
func (img layeredImage) top() string { return img.chain[len(img.chain)-1] }

// buildLayeredArchive writes an OCI image layout tar of image name with
// layers, streamed to a file so that large layers are held once.
func buildLayeredArchive(t *testing.T, name string, layers ...[]byte) layeredImage {
	t.Helper()
	img := layeredImage{name: name, archive: filepath.Join(t.TempDir(), "image.tar")}
	var diffIDs []digest.Digest
	var descs []ocispec.Descriptor
	for _, l := range layers {
		desc := descriptor(ocispec.MediaTypeImageLayer, l)
		descs, diffIDs = append(descs, desc), append(diffIDs, desc.Digest)
	}
	for i, id := range diffIDs {
		if i == 0 {
			img.chain = append(img.chain, id.String())
			continue
		}
		img.chain = append(img.chain, digest.FromString(img.chain[i-1]+" "+id.String()).String())
	}
	config := mustJSON(t, ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	})
	configDesc := descriptor(ocispec.MediaTypeImageConfig, config)
	manifest := mustJSON(t, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    configDesc,
		Layers:    descs,
	})
	manifestDesc := descriptor(ocispec.MediaTypeImageManifest, manifest)
	manifestDesc.Annotations = map[string]string{
		"io.containerd.image.name": name,
		ocispec.AnnotationRefName:  name[strings.LastIndex(name, ":")+1:],
	}
	index := mustJSON(t, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{manifestDesc},
	})
	writeOCILayout(t, img.archive, index, append([][]byte{config, manifest}, layers...)...)
	return img
}

// writeOCILayout writes at path an OCI image layout tar with index.json
// and blobs.
func writeOCILayout(t *testing.T, path string, index []byte, blobs ...[]byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	add := func(name string, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	add(ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion":"1.0.0"}`))
	add("index.json", index)
	for _, b := range blobs {
		add("blobs/sha256/"+digest.FromBytes(b).Encoded(), b)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
}

// snapshotsArgs returns the ctr arguments of `ctr -n ns snapshots
// --snapshotter sn args...`.
func snapshotsArgs(ns, sn string, args ...string) []string {
	return append([]string{"-n", ns, "snapshots", "--snapshotter", sn}, args...)
}

// snapshotRoot is the directory snapshotter sn keeps a directory per
// snapshot in.
func (d *daemon) snapshotRoot(sn string) string {
	return filepath.Join(d.Root, "io.containerd.snapshotter.v1."+sn, "snapshots")
}

// snapshotDirs lists the snapshot directories of snapshotter sn on disk.
func (d *daemon) snapshotDirs(sn string) []string {
	d.t.Helper()
	entries, err := os.ReadDir(d.snapshotRoot(sn))
	if err != nil {
		d.t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// snapshotLines parses `ctr snapshots ls` into its lines, without the
// header. Unpack keys hold a space, so lines are not split into columns.
func snapshotLines(t *testing.T, out string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "KEY") {
		t.Fatalf("ctr snapshots ls printed no table:\n%s", out)
	}
	return lines[1:]
}

// snapshotsLs runs `ctr snapshots ls` and returns its lines.
func (d *daemon) snapshotsLs(ns, sn string) []string {
	d.t.Helper()
	return snapshotLines(d.t, d.mustCtr(snapshotsArgs(ns, sn, "ls")...))
}

// mountSnapshot mounts snapshot key as a person would: it runs the mount
// command that `ctr snapshots mounts` prints, on a new directory, and
// returns it. Cleanup unmounts what the test did not.
func (d *daemon) mountSnapshot(ns, sn, key string) string {
	d.t.Helper()
	target := d.t.TempDir()
	out := d.mustCtr(snapshotsArgs(ns, sn, "mounts", target, key)...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "mount ") {
		d.t.Fatalf("ctr snapshots mounts printed no mount command:\n%s", out)
	}
	d.t.Cleanup(func() { unmountAll(d.t, target) })
	for _, line := range lines {
		if b, err := exec.Command("sh", "-c", line).CombinedOutput(); err != nil {
			d.t.Fatalf("%s: %v: %s", line, err, b)
		}
	}
	return target
}

// unmountAll unmounts everything mounted on target.
func unmountAll(t *testing.T, target string) {
	t.Helper()
	for range 10 {
		err := unix.Unmount(target, 0)
		if err == unix.EINVAL || err == unix.ENOENT {
			return // not a mount point (any more)
		}
		if err != nil {
			t.Errorf("unmount %s: %v", target, err)
			return
		}
	}
}

// usageBytes parses the SIZE column of `ctr snapshots usage -b` for key.
func usageBytes(t *testing.T, out, key string) (size, inodes int64) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == key {
			size, err1 := strconv.ParseInt(f[1], 10, 64)
			inodes, err2 := strconv.ParseInt(f[2], 10, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("ctr snapshots usage -b: bad line %q", line)
			}
			return size, inodes
		}
	}
	t.Fatalf("ctr snapshots usage -b printed no line for %s:\n%s", key, out)
	return 0, 0
}

// snapshotInfo runs `ctr snapshots info key`.
type snapshotInfo struct {
	Kind   string
	Name   string
	Parent string
	Labels map[string]string
}

func (d *daemon) snapshotInfo(ns, sn, key string) snapshotInfo {
	d.t.Helper()
	var info snapshotInfo
	out := d.mustCtr(snapshotsArgs(ns, sn, "info", key)...)
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		d.t.Fatalf("ctr snapshots info %s: %v:\n%s", key, err, out)
	}
	return info
}

// TestSnapshotsCtr drives every `ctr snapshots` command through a
// snapshot's life on each snapshotter: a file written through the
// printed mount command is in the committed snapshot's views.
func TestSnapshotsCtr(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	for _, sn := range snapshotters {
		t.Run(sn, func(t *testing.T) {
			ns := "cli-" + sn
			ctrCommitBase(t, d, ns, sn)
			ctrViewAndChild(t, d, ns, sn)
			ctrLabel(t, d, ns, sn)
			// Other namespaces see none of it.
			if got := d.snapshotsLs("elsewhere", sn); len(got) != 0 {
				t.Errorf("snapshots ls in another namespace = %q", got)
			}
			d.mustCtr(snapshotsArgs(ns, sn, "rm", "look", "child", "base")...)
			if got := d.snapshotsLs(ns, sn); len(got) != 0 {
				t.Errorf("snapshots ls after rm = %q, want none", got)
			}
			if got := d.snapshotDirs(sn); len(got) != 0 {
				t.Errorf("%s directories after rm = %q, want none", sn, got)
			}
		})
	}
}

// ctrCommitBase prepares "work", writes files through its printed mount
// command and commits it as "base", checking usage, ls and info.
func ctrCommitBase(t *testing.T, d *daemon, ns, sn string) {
	t.Helper()
	c := func(args ...string) string { return d.mustCtr(snapshotsArgs(ns, sn, args...)...) }
	c("prepare", "work")
	d.changeSnapshot(ns, sn, "work",
		writeChange("hello.txt", "hello\n", 0o644),
		writeChange("dir/big", string(make([]byte, 256<<10)), 0o600))
	if size, _ := usageBytes(t, c("usage", "-b", "work"), "work"); size < 256<<10 {
		t.Errorf("usage of the active snapshot = %d bytes, want at least 256 KiB", size)
	}
	c("commit", "base", "work")
	if got := snapshotLines(t, c("ls")); len(got) != 1 || strings.Fields(got[0])[0] != "base" || !strings.HasSuffix(strings.TrimSpace(got[0]), "Committed") {
		t.Errorf("snapshots ls after commit = %q, want base Committed", got)
	}
	info := d.snapshotInfo(ns, sn, "base")
	if info.Kind != "Committed" || info.Name != "base" || info.Parent != "" || info.Labels["containerd.io/gc.root"] == "" {
		t.Errorf("snapshots info base = %+v, want committed with ctr's gc.root label", info)
	}
	if size, inodes := usageBytes(t, c("usage", "-b"), "base"); size < 256<<10 || inodes < 3 {
		t.Errorf("usage of the committed snapshot = %d bytes %d inodes, want at least 256 KiB and 3", size, inodes)
	}
}

// ctrViewAndChild makes view "look" and active "child" over "base" and
// reads base's files through their mounts.
func ctrViewAndChild(t *testing.T, d *daemon, ns, sn string) {
	t.Helper()
	c := func(args ...string) string { return d.mustCtr(snapshotsArgs(ns, sn, args...)...) }
	c("view", "look", "base")
	target := d.mountSnapshot(ns, sn, "look")
	if b, err := os.ReadFile(filepath.Join(target, "hello.txt")); err != nil || string(b) != "hello\n" {
		t.Errorf("hello.txt in the view = %q, %v", b, err)
	}
	if st, err := os.Stat(filepath.Join(target, "dir", "big")); err != nil || st.Size() != 256<<10 || st.Mode().Perm() != 0o600 {
		t.Errorf("dir/big in the view: %v, %v", st, err)
	}
	if err := os.WriteFile(filepath.Join(target, "new"), nil, 0o644); err == nil {
		t.Errorf("wrote into a view's mount")
	}
	unmountAll(t, target)

	c("prepare", "child", "base")
	target = d.mountSnapshot(ns, sn, "child")
	if b, err := os.ReadFile(filepath.Join(target, "hello.txt")); err != nil || string(b) != "hello\n" {
		t.Errorf("hello.txt in the child = %q, %v", b, err)
	}
	unmountAll(t, target)
	if tree, want := c("tree"), " base\n  \\_ child\n  \\_ look\n"; tree != want {
		t.Errorf("snapshots tree =\n%s\nwant\n%s", tree, want)
	}
}

// ctrLabel sets and removes a label of "base".
func ctrLabel(t *testing.T, d *daemon, ns, sn string) {
	t.Helper()
	if got := d.mustCtr(snapshotsArgs(ns, sn, "label", "base", "team=berth")...); !strings.Contains(got, "team=berth") {
		t.Errorf("snapshots label printed %q, want team=berth", got)
	}
	if info := d.snapshotInfo(ns, sn, "base"); info.Labels["team"] != "berth" {
		t.Errorf("labels after snapshots label = %v", info.Labels)
	}
	d.mustCtr(snapshotsArgs(ns, sn, "label", "base", "team=")...)
	if info := d.snapshotInfo(ns, sn, "base"); info.Labels["team"] != "" || info.Labels["containerd.io/gc.root"] == "" {
		t.Errorf("labels after removing team = %v, want gc.root only", info.Labels)
	}
}

// TestSnapshotsCtrErrors: ctr's refusals say what is wrong, naming the
// snapshot and the namespace, and change nothing.
func TestSnapshotsCtrErrors(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	for _, sn := range snapshotters {
		t.Run(sn, func(t *testing.T) {
			ns := "errs-" + sn
			c := func(args ...string) string { return d.mustCtr(snapshotsArgs(ns, sn, args...)...) }
			c("prepare", "work")
			c("commit", "base", "work")
			c("view", "look", "base")
			c("prepare", "child", "base")
			d.mustCtr(snapshotsArgs("other", sn, "prepare", "theirs")...)
			for _, tc := range []struct {
				args []string
				want []string
			}{
				{[]string{"rm", "base"}, []string{`"base"`, "2 snapshot(s) descend from it", "failed precondition"}},
				{[]string{"commit", "x", "look"}, []string{`"look"`, "it is view, not active", "failed precondition"}},
				{[]string{"commit", "x", "base"}, []string{`"base"`, "committed, not active", "failed precondition"}},
				{[]string{"commit", "look", "child"}, []string{`"look"`, "already exists"}},
				{[]string{"prepare", "p", "missing"}, []string{`"p"`, `"missing"`, "not found"}},
				{[]string{"prepare", "p", "child"}, []string{`"p"`, `"child"`, "not committed", "invalid argument"}},
				{[]string{"prepare", "child"}, []string{`"child"`, "already exists"}},
				{[]string{"prepare", "p", "theirs"}, []string{`"theirs"`, `namespace "other"`, "not found"}},
				{[]string{"mounts", "/tmp", "base"}, []string{`"base"`, "committed", "failed precondition"}},
				{[]string{"info", "missing"}, []string{`"missing"`, "not found"}},
				{[]string{"rm", "missing"}, []string{`"missing"`, "not found"}},
			} {
				stderr := d.ctrFails(snapshotsArgs(ns, sn, tc.args...)...)
				for _, want := range append(tc.want, fmt.Sprintf("namespace %q", ns)) {
					if !strings.Contains(stderr, want) {
						t.Errorf("ctr snapshots %s: stderr %q lacks %q", strings.Join(tc.args, " "), stderr, want)
					}
				}
			}
			if got := snapshotLines(t, c("ls")); len(got) != 3 {
				t.Errorf("snapshots after refused commands = %q, want base, child and look", got)
			}
			if got := d.snapshotDirs(sn); len(got) != 4 {
				t.Errorf("%s directories after refused commands = %q, want 4", sn, got)
			}
			stderr := d.ctrFails("-n", ns, "snapshots", "--snapshotter", "zfs", "ls")
			if !strings.Contains(stderr, `"zfs"`) || !strings.Contains(stderr, "not found") {
				t.Errorf("ctr snapshots --snapshotter zfs ls: stderr %q, want it to name the snapshotter", stderr)
			}
		})
	}
}

// richLayers are three layers using every kind of entry: whiteouts of a
// file and of a directory, an opaque directory, symlinks (relative and
// absolute), a hard link, a device node, an owner and an xattr.
func richLayers(t *testing.T) [][]byte {
	t.Helper()
	xattr := fileEntry("xattr.txt", "x", 0o600)
	xattr.hdr.Uid, xattr.hdr.Gid = 1000, 1000
	xattr.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.berth": "yes"}
	null := tarEntry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}}
	return [][]byte{
		layerTar(t,
			dirEntry("etc", 0o755), fileEntry("etc/hostname", "one\n", 0o644),
			dirEntry("opq", 0o755), fileEntry("opq/old1", "old1", 0o644),
			dirEntry("opq/sub", 0o755), fileEntry("opq/sub/old2", "old2", 0o644),
			dirEntry("del", 0o755), fileEntry("del/gone", "gone", 0o644),
			dirEntry("rmdir", 0o755), fileEntry("rmdir/f", "f", 0o644),
			fileEntry("keep.txt", "keep", 0o644)),
		layerTar(t,
			dirEntry("del", 0o755), whiteoutEntry("del/gone"),
			whiteoutEntry("rmdir"),
			dirEntry("opq", 0o755), fileEntry("opq/.wh..wh..opq", "", 0o644), fileEntry("opq/new", "new", 0o644),
			dirEntry("bin", 0o755), fileEntry("bin/tool", "tool", 0o755),
			hardlinkEntry("bin/hard", "bin/tool"),
			symlinkEntry("bin/link", "tool"), symlinkEntry("bin/abs", "/etc/hostname")),
		layerTar(t,
			dirEntry("dev", 0o755), null,
			xattr,
			dirEntry("etc", 0o755), fileEntry("etc/hostname", "three\n", 0o644),
			dirEntry("late", 0o700)),
	}
}

// richTree is what richLayers unpack to.
var richTree = []string{
	"bin dir 0755 0:0",
	"bin/abs symlink -> /etc/hostname",
	`bin/hard file 0755 0:0 "tool" nlink=2`,
	"bin/link symlink -> tool",
	`bin/tool file 0755 0:0 "tool" nlink=2`,
	"del dir 0755 0:0",
	"dev dir 0755 0:0",
	"dev/null char 0666 0:0 1:3",
	"etc dir 0755 0:0",
	`etc/hostname file 0644 0:0 "three\n"`,
	`keep.txt file 0644 0:0 "keep"`,
	"late dir 0700 0:0",
	"opq dir 0755 0:0",
	`opq/new file 0644 0:0 "new"`,
	`xattr.txt file 0600 1000:1000 "x" user.berth=yes`,
}

// TestImportLayers imports an image of richLayers with ctr, which unpacks
// it through berthd's snapshots and diff services, and checks the tree a
// read-only view of its top shows; removing the image removes every
// snapshot directory.
func TestImportLayers(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	img := buildLayeredArchive(t, "example.com/berth/rich:1", richLayers(t)...)
	for _, sn := range snapshotters {
		t.Run(sn, func(t *testing.T) {
			ns := "rich-" + sn
			importImage(t, d, ns, img.archive, "--snapshotter", sn)
			lines := d.snapshotsLs(ns, sn)
			if len(lines) != 3 {
				t.Fatalf("snapshots after import = %q, want the 3 layers", lines)
			}
			for i, chain := range img.chain {
				info := d.snapshotInfo(ns, sn, chain)
				if want := map[bool]string{true: "", false: img.chain[max(i-1, 0)]}[i == 0]; info.Kind != "Committed" || info.Parent != want {
					t.Errorf("layer %d: snapshot %+v, want committed over %q", i, info, want)
				}
			}

			d.mustCtr(snapshotsArgs(ns, sn, "view", "top", img.top())...)
			target := d.mountSnapshot(ns, sn, "top")
			if got := fsTree(t, target); !slices.Equal(got, richTree) {
				t.Errorf("tree of the image's view:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(richTree, "\n"))
			}
			tool, err1 := os.Stat(filepath.Join(target, "bin/tool"))
			hard, err2 := os.Stat(filepath.Join(target, "bin/hard"))
			if err1 != nil || err2 != nil || !os.SameFile(tool, hard) {
				t.Errorf("bin/hard is not a hard link of bin/tool (%v, %v)", err1, err2)
			}
			unmountAll(t, target)
			d.mustCtr(snapshotsArgs(ns, sn, "rm", "top")...)

			d.mustCtr("-n", ns, "images", "rm", "--sync", img.name)
			if got := d.snapshotsLs(ns, sn); len(got) != 0 {
				t.Errorf("snapshots after images rm --sync = %q, want none", got)
			}
			if got := d.snapshotDirs(sn); len(got) != 0 {
				t.Errorf("%s directories after images rm --sync = %q, want none", sn, got)
			}
		})
	}
	if got := d.blobFiles(); len(got) != 0 {
		t.Errorf("blob files after both images went = %q", got)
	}
}

// TestImportEscape imports images whose second layer reaches out of the
// snapshot: the import fails naming the entry, no snapshot of that layer
// is left, and nothing is written outside. A file written through an
// absolute symlink lands inside the snapshot, as in containerd.
func TestImportEscape(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := layerTar(t, fileEntry("ok", "ok", 0o644))
	for _, tc := range []struct {
		name  string
		layer []byte
		want  []string
	}{
		{"dotdot", layerTar(t, fileEntry("../evil", "pwned", 0o644)), []string{`"../evil"`, "escapes"}},
		{"dotdot dir", layerTar(t, dirEntry("a", 0o755), fileEntry("a/../../evil", "pwned", 0o644)), []string{`"a/../../evil"`, "escapes"}},
		// The symlink is followed inside the snapshot, where there is no
		// victim.
		{"hardlink through absolute symlink", layerTar(t, symlinkEntry("evil", outside), hardlinkEntry("h", "evil/victim")), []string{`"h"`, `hardlink target "evil/victim"`}},
		{"absolute hardlink", layerTar(t, hardlinkEntry("h", victim)), []string{`"h"`, "hardlink target"}},
		{"hardlink dotdot", layerTar(t, hardlinkEntry("h", "../../../../../../../../"+victim)), []string{`"h"`, "escapes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := buildLayeredArchive(t, "example.com/berth/evil:1", good, tc.layer)
			for _, sn := range snapshotters {
				importFails(t, d, strings.ReplaceAll(tc.name, " ", "-")+"-"+sn, sn, img, tc.want...)
			}
		})
	}
	checkOutside(t, d, outside, victim)

	// Without a lease, what the failed imports committed goes.
	d.collectGarbage()
	for _, sn := range snapshotters {
		if got := d.snapshotDirs(sn); len(got) != 0 {
			t.Errorf("%s directories after the failed imports and a collection = %q, want none", sn, got)
		}
	}

	t.Run("file through absolute symlink", func(t *testing.T) {
		img := buildLayeredArchive(t, "example.com/berth/contained:1", good,
			layerTar(t, symlinkEntry("evil", outside), fileEntry("evil/pwned", "pwned", 0o644)))
		for _, sn := range snapshotters {
			importContained(t, d, "contained-"+sn, sn, img, filepath.Join(outside, "pwned"))
		}
	})
	checkOutside(t, d, outside, victim)
}

// importFails imports img into namespace ns, which must fail with an
// error containing want, leaving no snapshot of the layer that failed,
// the second, and no active snapshot.
func importFails(t *testing.T, d *daemon, ns, sn string, img layeredImage, want ...string) {
	t.Helper()
	stderr := d.ctrFails("-n", ns, "images", "import", "--snapshotter", sn, img.archive)
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("%s: import stderr %q lacks %q", sn, stderr, w)
		}
	}
	for _, line := range d.snapshotsLs(ns, sn) {
		if strings.Contains(line, img.chain[1]) || !strings.HasSuffix(strings.TrimSpace(line), "Committed") {
			t.Errorf("%s: snapshot left by the failed import: %q", sn, line)
		}
	}
}

// importContained imports img into namespace ns and checks that its top
// snapshot holds file pwned, written through a symlink pointing out.
func importContained(t *testing.T, d *daemon, ns, sn string, img layeredImage, pwned string) {
	t.Helper()
	importImage(t, d, ns, img.archive, "--snapshotter", sn)
	d.mustCtr(snapshotsArgs(ns, sn, "view", "top", img.top())...)
	target := d.mountSnapshot(ns, sn, "top")
	defer unmountAll(t, target)
	if b, err := os.ReadFile(filepath.Join(target, pwned)); err != nil || string(b) != "pwned" {
		t.Errorf("%s: the file written through the symlink is not inside the snapshot: %q, %v", sn, b, err)
	}
}

// checkOutside fails if anything outside the snapshots changed: the
// directory outside holds only its victim, untouched; no file "evil"
// exists anywhere under the test's directories, and "pwned" only where
// the symlink leads inside a snapshot.
func checkOutside(t *testing.T, d *daemon, outside, victim string) {
	t.Helper()
	entries, _ := os.ReadDir(outside)
	if len(entries) != 1 {
		t.Errorf("the directory outside holds %d entries, want only its victim", len(entries))
	}
	var st unix.Stat_t
	if err := unix.Stat(victim, &st); err != nil || st.Nlink != 1 {
		t.Errorf("victim: nlink %d, %v; want it untouched", st.Nlink, err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Errorf("victim = %q, want it untouched", b)
	}
	_ = filepath.WalkDir(filepath.Dir(filepath.Dir(d.Root)), func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || e.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		inSnapshot := strings.Contains(path, "/snapshots/") && strings.HasSuffix(path, outside+"/pwned")
		if e.Name() == "evil" || e.Name() == "pwned" && !inSnapshot {
			t.Errorf("%s written outside any snapshot", path)
		}
		return nil
	})
}

// bigLayer returns a layer of 100 MiB of random data in 16 KiB files,
// data/DD/FFFF, and how many files it has.
func bigLayer(t *testing.T) (layer []byte, files int) {
	t.Helper()
	const fileSize, dirs, perDir = 16 << 10, 16, 400
	data := randomBlob(t, fileSize*dirs*perDir)
	entries := []tarEntry{dirEntry("data", 0o755)}
	for i := range dirs {
		dir := fmt.Sprintf("data/%02d", i)
		entries = append(entries, dirEntry(dir, 0o755))
		for j := range perDir {
			n := i*perDir + j
			entries = append(entries, fileEntry(fmt.Sprintf("%s/%04d", dir, j), string(data[n*fileSize:(n+1)*fileSize]), 0o644))
		}
	}
	return layerTar(t, entries...), dirs * perDir
}

// TestImportKilled SIGKILLs berthd while ctr images import unpacks a
// ~100 MiB layer. After a restart no snapshot of that layer is committed
// and no directory is left that no snapshot owns; once the crashed
// import's lease is gone, nothing of it is left; the import then
// succeeds when run again.
func TestImportKilled(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	big, files := bigLayer(t)
	img := buildLayeredArchive(t, "example.com/berth/big:1", layerTar(t, fileEntry("base", "base", 0o644)), big)
	const ns, sn = "killed", "overlayfs"
	killDuringUnpack(t, d, ns, img)

	d.start() // after the start-up collection
	lines := d.snapshotsLs(ns, sn)
	for _, line := range lines {
		if strings.Fields(line)[0] == img.chain[1] {
			t.Errorf("the interrupted layer is committed after the crash: %q", line)
		}
		if strings.HasSuffix(strings.TrimSpace(line), "Active") && !strings.HasPrefix(line, "extract-") {
			t.Errorf("unexpected active snapshot after the crash: %q", line)
		}
	}
	if got := d.snapshotDirs(sn); len(got) != len(lines) {
		t.Errorf("after the crash %d snapshot directories %q for %d snapshots %q: orphans left", len(got), got, len(lines), lines)
	}
	// The crashed import's lease would expire in a day; remove it now.
	for _, id := range leaseIDs(t, d.mustCtr("-n", ns, "leases", "ls")) {
		d.mustCtr("-n", ns, "leases", "rm", "--sync", id)
	}
	if got := d.snapshotsLs(ns, sn); len(got) != 0 {
		t.Errorf("snapshots once the crashed import's lease went = %q, want none", got)
	}
	if got := d.snapshotDirs(sn); len(got) != 0 {
		t.Errorf("snapshot directories once the crashed import's lease went = %q, want none", got)
	}

	importImage(t, d, ns, img.archive)
	checkBigImage(t, d, ns, img, files)
	d.mustCtr("-n", ns, "images", "rm", "--sync", img.name)
	if got := d.snapshotDirs(sn); len(got) != 0 {
		t.Errorf("snapshot directories after images rm --sync = %q, want none", got)
	}
}

// killDuringUnpack runs ctr images import of img into overlayfs and
// SIGKILLs berthd as soon as the big layer's first files land.
func killDuringUnpack(t *testing.T, d *daemon, ns string, img layeredImage) {
	t.Helper()
	imp := d.ctrBackground(nil, "-n", ns, "images", "import", img.archive)
	deadline := time.Now().Add(2 * ctrTimeout)
	for d.unpackedFiles("overlayfs", "data/00") == 0 {
		if imp.wait(0) {
			t.Fatalf("ctr images import ended before it could be interrupted (%v):\n%s%s", imp.err, imp.stdout, imp.stderr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the big layer's unpack did not start within %s", 2*ctrTimeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	d.kill()
	if !imp.wait(ctrTimeout) || imp.err == nil {
		t.Fatalf("ctr images import: %v, want a failure once berthd was killed", imp.err)
	}
}

// checkBigImage checks that img is unpacked in overlayfs: both layers
// committed, and a view of the top holding every file.
func checkBigImage(t *testing.T, d *daemon, ns string, img layeredImage, files int) {
	t.Helper()
	const sn = "overlayfs"
	var got []string
	for _, line := range d.snapshotsLs(ns, sn) {
		if strings.HasSuffix(strings.TrimSpace(line), "Committed") {
			got = append(got, strings.Fields(line)[0])
		}
	}
	if slices.Sort(got); len(got) != 2 || !slices.Contains(got, img.chain[0]) || !slices.Contains(got, img.chain[1]) {
		t.Errorf("committed snapshots = %q, want the 2 layers %q", got, img.chain)
	}
	d.mustCtr(snapshotsArgs(ns, sn, "view", "top", img.top())...)
	target := d.mountSnapshot(ns, sn, "top")
	if n := countFiles(t, filepath.Join(target, "data")); n != files {
		t.Errorf("the big layer's view holds %d files, want %d", n, files)
	}
	if b, err := os.ReadFile(filepath.Join(target, "base")); err != nil || string(b) != "base" {
		t.Errorf("base = %q, %v", b, err)
	}
	unmountAll(t, target)
	d.mustCtr(snapshotsArgs(ns, sn, "rm", "top")...)
}

// unpackedFiles counts the regular files under dir (a path inside a
// snapshot) of any overlayfs snapshot directory of sn.
func (d *daemon) unpackedFiles(sn, dir string) int {
	n := 0
	snaps, _ := os.ReadDir(d.snapshotRoot(sn))
	for _, s := range snaps {
		_ = filepath.WalkDir(filepath.Join(d.snapshotRoot(sn), s.Name(), "fs", dir), func(_ string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				n++
			}
			return nil
		})
	}
	return n
}
