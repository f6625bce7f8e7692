package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/snapshots"
	"github.com/containerd/errdefs"
)

func newDirs(t *testing.T) (*Dirs, *MetaStore) {
	t.Helper()
	ms, _ := newMetaStore(t)
	d, err := NewDirs(ms, filepath.Join(t.TempDir(), "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	return d, ms
}

func writeMarker(_ context.Context, dir string, _ Snapshot) error {
	return os.WriteFile(filepath.Join(dir, "marker"), []byte("x"), 0o644)
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestDirsCreateRemove(t *testing.T) {
	d, ms := newDirs(t)
	ctx := context.Background()
	s, err := d.Create(ctx, snapshots.KindActive, "k", "", writeMarker)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d.Path(s.ID), "marker")); err != nil {
		t.Errorf("populated directory not in place: %v", err)
	}
	if got := listDir(t, d.root); !slices.Equal(got, []string{s.ID}) {
		t.Errorf("root holds %q, want only %q", got, s.ID)
	}
	if _, err := d.Create(ctx, snapshots.KindActive, "k", "", writeMarker); !errdefs.IsAlreadyExists(err) {
		t.Errorf("duplicate: %v", err)
	}
	if err := d.Remove(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, d.root); len(got) != 0 {
		t.Errorf("after Remove the root holds %q", got)
	}
	if _, err := ms.Stat(ctx, "k"); !errdefs.IsNotFound(err) {
		t.Errorf("record after Remove: %v", err)
	}
	// The directory went through the trash and is deleted there.
	d.wait()
	if got := listDir(t, d.trash); len(got) != 0 {
		t.Errorf("after Remove the trash holds %q", got)
	}
}

func TestDirsPopulateFailure(t *testing.T) {
	d, ms := newDirs(t)
	ctx := context.Background()
	boom := errors.New("boom")
	_, err := d.Create(ctx, snapshots.KindActive, "k", "", func(ctx context.Context, dir string, s Snapshot) error {
		if err := writeMarker(ctx, dir, s); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
	if got := listDir(t, d.root); len(got) != 0 {
		t.Errorf("failed Create left %q", got)
	}
	if _, err := ms.Stat(ctx, "k"); !errdefs.IsNotFound(err) {
		t.Errorf("failed Create left a record: %v", err)
	}
}

func TestDirsCleanup(t *testing.T) {
	d, _ := newDirs(t)
	ctx := context.Background()
	// What a crash after the rename and before the commit leaves: the
	// directory of the ID the next Create is handed.
	if err := os.MkdirAll(filepath.Join(d.Path("1"), "stale"), 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := d.Create(ctx, snapshots.KindActive, "k", "", writeMarker)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "1" {
		t.Fatalf("first ID %q", s.ID)
	}
	if _, err := os.Stat(filepath.Join(d.Path("1"), "stale")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale content survived in the new snapshot: %v", err)
	}
	for _, p := range []string{"99/fs", tempPrefix + "123/fs"} {
		if err := os.MkdirAll(filepath.Join(d.root, p), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d.root, "stray"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, d.root); !slices.Equal(got, []string{"1"}) {
		t.Errorf("after Cleanup the root holds %q, want only the live snapshot", got)
	}
}

// A crash during a deletion in the trash leaves a directory there, maybe
// with something mounted below it; Cleanup unmounts and removes it.
func TestDirsCleanupEmptiesTrash(t *testing.T) {
	d, _ := newDirs(t)
	left := filepath.Join(d.trash, "7", "fs", "m")
	if err := os.MkdirAll(left, 0o700); err != nil {
		t.Fatal(err)
	}
	precious := t.TempDir()
	if err := os.WriteFile(filepath.Join(precious, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		bind := mount.Mount{Type: "bind", Source: precious, Options: []string{"bind"}}
		if err := bind.Mount(left); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = mount.UnmountAll(left, 0) })
	}
	if err := d.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, d.trash); len(got) != 0 {
		t.Errorf("after Cleanup the trash holds %q", got)
	}
	if _, err := os.Stat(filepath.Join(precious, "keep")); err != nil {
		t.Errorf("Cleanup removed files through a mount: %v", err)
	}
}

func TestDirsMountsBelow(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("mounting needs root: run the tests as root (make test does)")
	}
	d, _ := newDirs(t)
	ctx := context.Background()
	precious := t.TempDir()
	if err := os.WriteFile(filepath.Join(precious, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := d.Create(ctx, snapshots.KindActive, "k", "", func(_ context.Context, dir string, _ Snapshot) error {
		return os.Mkdir(filepath.Join(dir, "m"), 0o755)
	})
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(d.Path(s.ID), "m")
	bind := mount.Mount{Type: "bind", Source: precious, Options: []string{"bind"}}
	if err := bind.Mount(target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mount.UnmountAll(target, 0) })

	if err := d.Remove(ctx, "k"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Remove over a mount: %v, want FailedPrecondition", err)
	}
	// Make the snapshot an orphan: Cleanup unmounts before removing.
	if err := d.ms.Update(ctx, func(tx *Tx) error { _, _, err := tx.Remove("k"); return err }); err != nil {
		t.Fatal(err)
	}
	if err := d.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(precious, "keep")); err != nil {
		t.Errorf("Cleanup removed files through a mount: %v", err)
	}
	if got := listDir(t, d.root); len(got) != 0 {
		t.Errorf("after Cleanup the root holds %q", got)
	}
}

func TestDiskUsage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "f"), filepath.Join(dir, "g")); err != nil {
		t.Fatal(err)
	}
	u, err := DiskUsage(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if u.Inodes != 2 || u.Size < 64<<10 || u.Size > 2*(64<<10) {
		t.Errorf("usage %+v: want 2 inodes (dir, file linked twice) and about 64 KiB", u)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := DiskUsage(ctx, dir); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
