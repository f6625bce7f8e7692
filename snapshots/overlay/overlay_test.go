package overlay

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/snapshots"
	"github.com/berth-dev/berth/snapshots/storage"
	"github.com/berth-dev/berth/snapshots/testsuite"
	"golang.org/x/sys/unix"
)

func newOverlay(_ context.Context, root string) (snapshots.Snapshotter, func() error, error) {
	s, err := NewSnapshotter(root)
	if err != nil {
		return nil, nil, err
	}
	return s, s.Close, nil
}

func TestSuite(t *testing.T) {
	testsuite.SnapshotterSuite(t, "overlay", newOverlay)
}

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("overlay needs root: run the tests as root (make test does)")
	}
}

func newSnapshotter(t *testing.T, opts ...Opt) *Snapshotter {
	t.Helper()
	s, err := NewSnapshotter(t.TempDir(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestMountShapes checks the mounts of each kind of snapshot against the
// package documentation.
func TestMountShapes(t *testing.T) {
	requireRoot(t)
	s := newSnapshotter(t, WithMountOptions("volatile"))
	ctx := context.Background()
	mustCommit := func(name, key, parent string) {
		if _, err := s.Prepare(ctx, key, parent); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx, name, key); err != nil {
			t.Fatal(err)
		}
	}
	mustCommit("l1", "k1", "")
	mustCommit("l2", "k2", "l1")
	for _, tc := range []struct {
		key, parent string
		view        bool
		typ         string
		has         []string
		lacks       []string
	}{
		{"a0", "", false, "bind", []string{"rw", "rbind"}, nil},
		{"a2", "l2", false, "overlay", []string{"upperdir=", "workdir=", "lowerdir=", "volatile"}, nil},
		{"v0", "", true, "bind", []string{"ro", "rbind"}, nil},
		{"v1", "l1", true, "bind", []string{"ro", "rbind"}, nil},
		{"v2", "l2", true, "overlay", []string{"lowerdir="}, []string{"upperdir=", "workdir="}},
	} {
		create := s.Prepare
		if tc.view {
			create = s.View
		}
		m, err := create(ctx, tc.key, tc.parent)
		if err != nil {
			t.Fatal(err)
		}
		if len(m) != 1 || m[0].Type != tc.typ {
			t.Fatalf("%s: mounts %+v, want one %s", tc.key, m, tc.typ)
		}
		opts := strings.Join(m[0].Options, ",")
		for _, want := range tc.has {
			if !strings.Contains(opts, want) {
				t.Errorf("%s: options %q lack %q", tc.key, opts, want)
			}
		}
		for _, no := range tc.lacks {
			if strings.Contains(opts, no) {
				t.Errorf("%s: options %q have %q", tc.key, opts, no)
			}
		}
	}
	if _, err := os.Stat("/sys/module/overlay/parameters/index"); err == nil && !slices.Contains(s.layout.options, "index=off") {
		t.Errorf("the kernel has index=off but the probe chose %q", s.layout.options)
	}
}

// TestWhiteout checks that a deletion is recorded in the layer as an
// overlay whiteout, which hides the file from the layers below.
func TestWhiteout(t *testing.T) {
	requireRoot(t)
	s := newSnapshotter(t)
	ctx := context.Background()
	m, err := s.Prepare(ctx, "k1", "")
	if err != nil {
		t.Fatal(err)
	}
	withMount(t, m, func(root string) {
		if err := os.WriteFile(filepath.Join(root, "gone"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	if err := s.Commit(ctx, "l1", "k1"); err != nil {
		t.Fatal(err)
	}
	if m, err = s.Prepare(ctx, "k2", "l1"); err != nil {
		t.Fatal(err)
	}
	withMount(t, m, func(root string) {
		if err := os.Remove(filepath.Join(root, "gone")); err != nil {
			t.Fatal(err)
		}
	})
	var id string
	err = s.ms.View(ctx, func(tx *storage.Tx) error {
		sn, err := tx.GetSnapshot("k2")
		id = sn.ID
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(s.layout.upper(id), "gone"), &st); err != nil {
		t.Fatalf("no whiteout in the upper layer: %v", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("whiteout is mode %#o rdev %d, want a 0:0 character device", st.Mode, st.Rdev)
	}
}

func withMount(t *testing.T, m []mount.Mount, fn func(root string)) {
	t.Helper()
	target := t.TempDir()
	if err := mount.All(m, target); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := mount.UnmountAll(target, 0); err != nil {
			t.Error(err)
		}
	}()
	fn(target)
}
