package integration

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	diffapi "github.com/containerd/containerd/api/services/diff/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/api/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// fsChange is one change a test makes through a mounted snapshot.
type fsChange func(t *testing.T, root string)

func writeChange(name, data string, mode os.FileMode) fsChange {
	return func(t *testing.T, root string) {
		t.Helper()
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
}

func removeChange(name string) fsChange {
	return func(t *testing.T, root string) {
		t.Helper()
		if err := os.RemoveAll(filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func fsOp(op func(root string) error) fsChange {
	return func(t *testing.T, root string) {
		t.Helper()
		if err := op(root); err != nil {
			t.Fatal(err)
		}
	}
}

// changeSnapshot mounts active snapshot key with the printed mount
// command, makes changes and unmounts it.
func (d *daemon) changeSnapshot(ns, sn, key string, changes ...fsChange) {
	d.t.Helper()
	target := d.mountSnapshot(ns, sn, key)
	for _, c := range changes {
		c(d.t, target)
	}
	unmountAll(d.t, target)
}

// treeOfSnapshot mounts snapshot key, reads its tree and unmounts it.
func (d *daemon) treeOfSnapshot(ns, sn, key string) []string {
	d.t.Helper()
	target := d.mountSnapshot(ns, sn, key)
	defer unmountAll(d.t, target)
	return fsTree(d.t, target)
}

// TestDiffService computes with the Diff service the layer between a
// committed snapshot's view and an active snapshot over it, applies that
// layer onto a fresh snapshot over the same parent, and finds the two
// trees equal.
func TestDiffService(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	for _, sn := range snapshotters {
		t.Run(sn, func(t *testing.T) {
			ns := "diff-" + sn
			// The layer blob lives under a lease until the test is done.
			d.mustCtr("-n", ns, "leases", "create", "--id", "diff")
			ctx := nsContext(t, ns, "diff")
			want := makeDiffSnapshots(t, d, ns, sn)
			checkCtrDiff(t, d, ns, sn)

			snaps := snapshotsapi.NewSnapshotsClient(d.client())
			differ := diffapi.NewDiffClient(d.client())
			layer, uncompressed := diffMounts(t, ctx, d, ns, sn, "lower", "upper")
			fresh, err := snaps.Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{Snapshotter: sn, Key: "fresh", Parent: "base"})
			if err != nil {
				t.Fatal(err)
			}
			applied, err := differ.Apply(ctx, &diffapi.ApplyRequest{Diff: layer, Mounts: fresh.Mounts})
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if applied.Applied.MediaType != ocispec.MediaTypeImageLayer || applied.Applied.Digest != uncompressed {
				t.Errorf("Apply returned %+v, want the uncompressed layer %s", applied.Applied, uncompressed)
			}
			if got := d.treeOfSnapshot(ns, sn, "fresh"); !slices.Equal(got, want) {
				t.Errorf("tree after applying the diff:\n%s\nwant the upper snapshot's:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			// A layer the content store does not have is not found.
			_, err = differ.Apply(ctx, &diffapi.ApplyRequest{Diff: &types.Descriptor{
				MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digestOf([]byte("missing")), Size: 7,
			}, Mounts: fresh.Mounts})
			if err == nil || !strings.Contains(err.Error(), "not found") {
				t.Errorf("Apply of a missing blob: %v, want not found", err)
			}

			d.mustCtr(snapshotsArgs(ns, sn, "rm", "fresh", "upper", "lower", "base")...)
			d.mustCtr("-n", ns, "leases", "rm", "--sync", "diff")
			if got := contentLabels(t, d.mustCtr("-n", ns, "content", "ls")); len(got) != 0 {
				t.Errorf("content after the lease went = %v, want the layer collected", got)
			}
			if got := d.snapshotDirs(sn); len(got) != 0 {
				t.Errorf("%s directories at the end = %q, want none", sn, got)
			}
		})
	}
}

// makeDiffSnapshots commits "base", makes view "lower" of it and active
// "upper" over it with every kind of change, and returns upper's tree.
func makeDiffSnapshots(t *testing.T, d *daemon, ns, sn string) []string {
	t.Helper()
	c := func(args ...string) string { return d.mustCtr(snapshotsArgs(ns, sn, args...)...) }
	c("prepare", "base-work")
	d.changeSnapshot(ns, sn, "base-work",
		writeChange("a.txt", "a\n", 0o644),
		writeChange("gone.txt", "gone\n", 0o644),
		writeChange("dir/b.txt", "b\n", 0o644),
		writeChange("dir/kept.txt", "kept\n", 0o644),
		writeChange("opq/x", "x", 0o644),
		writeChange("opq/y", "y", 0o644),
		writeChange("replaced", "a file", 0o644))
	c("commit", "base", "base-work")
	c("view", "lower", "base")
	c("prepare", "upper", "base")
	d.changeSnapshot(ns, sn, "upper",
		writeChange("a.txt", "a, changed\n", 0o600),
		writeChange("c.txt", "c\n", 0o644),
		removeChange("gone.txt"),
		removeChange("dir/b.txt"),
		removeChange("opq"),
		writeChange("opq/z", "z", 0o644),
		removeChange("replaced"),
		writeChange("replaced/now-a-dir", "d", 0o644),
		writeChange("new/deep/file", "deep", 0o640),
		fsOp(func(root string) error { return os.Symlink("../a.txt", filepath.Join(root, "new", "link")) }),
		fsOp(func(root string) error { return os.Link(filepath.Join(root, "c.txt"), filepath.Join(root, "c-hard")) }))
	tree := d.treeOfSnapshot(ns, sn, "upper")
	for _, gone := range []string{"gone.txt ", "dir/b.txt ", "opq/x ", "opq/y "} {
		if slices.ContainsFunc(tree, func(e string) bool { return strings.HasPrefix(e, gone) }) {
			t.Fatalf("upper still shows %s: %q", gone, tree)
		}
	}
	return tree
}

// checkCtrDiff runs ctr's own diff of "upper" against its parent, which
// goes through the same service, and checks the layer's entries.
func checkCtrDiff(t *testing.T, d *daemon, ns, sn string) {
	t.Helper()
	entries := tarNames(t, d.mustCtr(snapshotsArgs(ns, sn, "diff", "--media-type", ocispec.MediaTypeImageLayer, "upper")...))
	for _, name := range []string{"a.txt", "c.txt", ".wh.gone.txt", "dir/.wh.b.txt", "new/deep/file", "new/link", "opq/z", "replaced/now-a-dir"} {
		if !slices.Contains(entries, name) {
			t.Errorf("ctr snapshots diff upper: entries %q lack %s", entries, name)
		}
	}
	if slices.Contains(entries, "dir/kept.txt") {
		t.Errorf("ctr snapshots diff upper: entries %q hold the unchanged dir/kept.txt", entries)
	}
}

// diffMounts calls Diff on the mounts of snapshots lower and upper and
// returns the gzip layer it stored and its uncompressed digest, read from
// the blob's containerd.io/uncompressed label.
func diffMounts(t *testing.T, ctx context.Context, d *daemon, ns, sn, lower, upper string) (*types.Descriptor, string) {
	t.Helper()
	snaps := snapshotsapi.NewSnapshotsClient(d.client())
	lm, err := snaps.Mounts(ctx, &snapshotsapi.MountsRequest{Snapshotter: sn, Key: lower})
	if err != nil {
		t.Fatal(err)
	}
	um, err := snaps.Mounts(ctx, &snapshotsapi.MountsRequest{Snapshotter: sn, Key: upper})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := diffapi.NewDiffClient(d.client()).Diff(ctx, &diffapi.DiffRequest{
		Left: lm.Mounts, Right: um.Mounts,
		MediaType: ocispec.MediaTypeImageLayerGzip, Ref: "diff-" + sn,
		Labels: map[string]string{"origin": "TestDiffService"},
	})
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	if resp.Diff.MediaType != ocispec.MediaTypeImageLayerGzip || resp.Diff.Size == 0 {
		t.Fatalf("Diff returned %+v, want a gzip layer", resp.Diff)
	}
	labels := contentLabels(t, d.mustCtr("-n", ns, "content", "ls"))[resp.Diff.Digest]
	uncompressed := ""
	for _, l := range strings.Split(labels, ",") {
		if v, ok := strings.CutPrefix(l, "containerd.io/uncompressed="); ok {
			uncompressed = v
		}
	}
	if uncompressed == "" || !strings.Contains(labels, "origin=TestDiffService") {
		t.Errorf("labels of the layer blob = %q, want containerd.io/uncompressed and origin", labels)
	}
	return resp.Diff, uncompressed
}

// tarNames lists the entry names of tar stream b, without trailing
// slashes.
func tarNames(t *testing.T, b string) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(strings.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("read tar: %v (after %q)", err, names)
		}
		names = append(names, strings.TrimSuffix(hdr.Name, "/"))
	}
}

// fsTree describes every entry under root, sorted: path, type, mode,
// owner, then the contents of a regular file, the target of a symlink or
// the numbers of a device, the link count when above one and the
// extended attributes outside security.*.
func fsTree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		out = append(out, rel+" "+describe(t, path))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func describe(t *testing.T, path string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	s := fmt.Sprintf("%04o %d:%d", st.Mode&0o7777, st.Uid, st.Gid)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		s = "dir " + s
	case unix.S_IFREG:
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		s = fmt.Sprintf("file %s %q", s, b)
	case unix.S_IFLNK:
		target, err := os.Readlink(path)
		if err != nil {
			t.Fatal(err)
		}
		return "symlink -> " + target
	case unix.S_IFCHR:
		s = fmt.Sprintf("char %s %d:%d", s, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	default:
		s = fmt.Sprintf("type %o %s", st.Mode&unix.S_IFMT, s)
	}
	if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		s += fmt.Sprintf(" nlink=%d", st.Nlink)
	}
	return s + xattrsOf(t, path)
}

// xattrsOf lists the extended attributes of path outside security.*.
func xattrsOf(t *testing.T, path string) string {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(path, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", path, err)
	}
	var out string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" || strings.HasPrefix(name, "security.") {
			continue
		}
		val := make([]byte, 4096)
		m, err := unix.Lgetxattr(path, name, val)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", path, name, err)
		}
		out += fmt.Sprintf(" %s=%s", name, val[:m])
	}
	return out
}

// countFiles counts the regular files under dir.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
