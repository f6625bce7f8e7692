package storage

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/snapshots"
	"github.com/containerd/errdefs"
)

func newMetaStore(t *testing.T) (*MetaStore, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "metadata.db")
	ms, err := NewMetaStore(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	return ms, path
}

func create(t *testing.T, ms *MetaStore, kind snapshots.Kind, key, parent string, opts ...snapshots.Opt) Snapshot {
	t.Helper()
	var s Snapshot
	err := ms.Update(context.Background(), func(tx *Tx) error {
		var err error
		s, err = tx.CreateSnapshot(kind, key, parent, opts...)
		return err
	})
	if err != nil {
		t.Fatalf("create %s %q: %v", kind, key, err)
	}
	return s
}

func commit(t *testing.T, ms *MetaStore, name, key string, opts ...snapshots.Opt) {
	t.Helper()
	measure := func(context.Context, string) (snapshots.Usage, error) {
		return snapshots.Usage{Inodes: 2, Size: 4096}, nil
	}
	if err := ms.Commit(context.Background(), name, key, measure, opts...); err != nil {
		t.Fatalf("commit %q as %q: %v", key, name, err)
	}
}

func TestChainAndCommit(t *testing.T) {
	ms, _ := newMetaStore(t)
	ctx := context.Background()
	a := create(t, ms, snapshots.KindActive, "a", "", snapshots.WithLabels(map[string]string{"x": "1"}))
	commit(t, ms, "base", "a", snapshots.WithLabels(map[string]string{"y": "2"}))
	b := create(t, ms, snapshots.KindActive, "b", "base")
	commit(t, ms, "mid", "b")
	c := create(t, ms, snapshots.KindView, "c", "mid")

	if want := []string{b.ID, a.ID}; !slices.Equal(c.ParentIDs, want) {
		t.Errorf("parent IDs %q, want %q (nearest first)", c.ParentIDs, want)
	}
	info, err := ms.Stat(ctx, "base")
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != snapshots.KindCommitted || info.Labels["y"] != "2" || info.Labels["x"] != "" {
		t.Errorf("committed info %+v: want kind Committed and only the commit's labels", info)
	}
	if _, err := ms.Stat(ctx, "a"); !errdefs.IsNotFound(err) {
		t.Errorf("key after commit: %v, want NotFound", err)
	}
	err = ms.View(ctx, func(tx *Tx) error {
		id, _, usage, err := tx.GetInfo("base")
		if id != a.ID || usage.Size != 4096 || usage.Inodes != 2 {
			t.Errorf("commit kept id %q (want %q) usage %+v", id, a.ID, usage)
		}
		if _, err := tx.GetSnapshot("base"); !errdefs.IsFailedPrecondition(err) {
			t.Errorf("GetSnapshot of committed: %v, want FailedPrecondition", err)
		}
		ids, err := tx.IDMap()
		if len(ids) != 3 || ids[c.ID] != "c" {
			t.Errorf("IDMap %v", ids)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestErrors(t *testing.T) {
	ms, _ := newMetaStore(t)
	ctx := context.Background()
	create(t, ms, snapshots.KindActive, "active", "")
	create(t, ms, snapshots.KindView, "view", "")
	create(t, ms, snapshots.KindActive, "tocommit", "")
	commit(t, ms, "committed", "tocommit")
	create(t, ms, snapshots.KindActive, "child", "committed")

	try := func(fn func(tx *Tx) error) error { return ms.Update(ctx, fn) }
	for _, tc := range []struct {
		name string
		err  error
		want func(error) bool
		msg  string
	}{
		{"duplicate key", try(func(tx *Tx) error { _, err := tx.CreateSnapshot(snapshots.KindView, "active", ""); return err }), errdefs.IsAlreadyExists, `snapshot "active": already exists`},
		{"key of a committed", try(func(tx *Tx) error { _, err := tx.CreateSnapshot(snapshots.KindActive, "committed", ""); return err }), errdefs.IsAlreadyExists, `snapshot "committed": already exists`},
		{"active parent", try(func(tx *Tx) error { _, err := tx.CreateSnapshot(snapshots.KindView, "v2", "active"); return err }), errdefs.IsInvalidArgument, `parent "active" is not committed`},
		{"missing parent", try(func(tx *Tx) error { _, err := tx.CreateSnapshot(snapshots.KindActive, "x", "nope"); return err }), errdefs.IsNotFound, `parent "nope": not found`},
		{"create committed", try(func(tx *Tx) error { _, err := tx.CreateSnapshot(snapshots.KindCommitted, "x", ""); return err }), errdefs.IsInvalidArgument, ""},
		{"empty key", try(func(tx *Tx) error { _, err := tx.CreateSnapshot(snapshots.KindActive, "", ""); return err }), errdefs.IsInvalidArgument, ""},
		{"commit view", try(func(tx *Tx) error { _, err := tx.CommitActive("view", "n", snapshots.Usage{}); return err }), errdefs.IsFailedPrecondition, `cannot commit "view": it is a view`},
		{"commit committed", try(func(tx *Tx) error { _, err := tx.CommitActive("committed", "n", snapshots.Usage{}); return err }), errdefs.IsFailedPrecondition, ""},
		{"commit to taken name", try(func(tx *Tx) error { _, err := tx.CommitActive("active", "view", snapshots.Usage{}); return err }), errdefs.IsAlreadyExists, ""},
		{"commit missing", try(func(tx *Tx) error { _, err := tx.CommitActive("nope", "n", snapshots.Usage{}); return err }), errdefs.IsNotFound, `snapshot "nope": not found`},
		{"remove parent", try(func(tx *Tx) error { _, _, err := tx.Remove("committed"); return err }), errdefs.IsFailedPrecondition, `cannot remove "committed": it has children`},
		{"remove missing", try(func(tx *Tx) error { _, _, err := tx.Remove("nope"); return err }), errdefs.IsNotFound, ""},
		{"bad label", try(func(tx *Tx) error {
			_, err := tx.CreateSnapshot(snapshots.KindActive, "x", "", snapshots.WithLabels(map[string]string{"": "v"}))
			return err
		}), errdefs.IsInvalidArgument, ""},
	} {
		if tc.err == nil || !tc.want(tc.err) {
			t.Errorf("%s: got %v", tc.name, tc.err)
			continue
		}
		if !strings.HasPrefix(tc.err.Error(), tc.msg) {
			t.Errorf("%s: message %q, want %q", tc.name, tc.err, tc.msg)
		}
	}
	// Once the child is gone the parent goes.
	err := try(func(tx *Tx) error {
		if _, _, err := tx.Remove("child"); err != nil {
			return err
		}
		id, kind, err := tx.Remove("committed")
		if id == "" || kind != snapshots.KindCommitted {
			t.Errorf("Remove returned %q %v", id, kind)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestUpdateInfo(t *testing.T) {
	ms, _ := newMetaStore(t)
	ctx := context.Background()
	create(t, ms, snapshots.KindActive, "k", "", snapshots.WithLabels(map[string]string{"a": "1", "b": "2"}))
	before, _ := ms.Stat(ctx, "k")

	upd := func(labels map[string]string, paths ...string) snapshots.Info {
		t.Helper()
		info, err := ms.UpdateInfo(ctx, snapshots.Info{Name: "k", Labels: labels}, paths...)
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	info := upd(map[string]string{"a": "10", "c": "3"}, "labels.a", "labels.b")
	if want := map[string]string{"a": "10"}; !mapsEqual(info.Labels, want) {
		t.Errorf("labels.a, labels.b: %v, want %v", info.Labels, want)
	}
	if !info.Updated.After(before.Updated) || !info.Created.Equal(before.Created) {
		t.Errorf("times: created %v→%v updated %v→%v", before.Created, info.Created, before.Updated, info.Updated)
	}
	if info = upd(map[string]string{"z": "26"}, "labels"); !mapsEqual(info.Labels, map[string]string{"z": "26"}) {
		t.Errorf("labels: %v", info.Labels)
	}
	if info = upd(map[string]string{"y": "25"}); !mapsEqual(info.Labels, map[string]string{"y": "25"}) {
		t.Errorf("no fieldpaths: %v", info.Labels)
	}
	if stat, _ := ms.Stat(ctx, "k"); !mapsEqual(stat.Labels, info.Labels) {
		t.Errorf("stored labels %v, returned %v", stat.Labels, info.Labels)
	}
	if _, err := ms.UpdateInfo(ctx, snapshots.Info{Name: "k"}, "parent"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("update parent: %v, want InvalidArgument", err)
	}
	if _, err := ms.UpdateInfo(ctx, snapshots.Info{Name: "nope"}); !errdefs.IsNotFound(err) {
		t.Errorf("update missing: %v, want NotFound", err)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestWalkFilters(t *testing.T) {
	ms, _ := newMetaStore(t)
	ctx := context.Background()
	create(t, ms, snapshots.KindActive, "a", "")
	commit(t, ms, "base", "a", snapshots.WithLabels(map[string]string{"role": "layer"}))
	create(t, ms, snapshots.KindActive, "work", "base", snapshots.WithLabels(map[string]string{"role": "rootfs"}))
	create(t, ms, snapshots.KindView, "look", "base")

	for filter, want := range map[string][]string{
		"":                        {"base", "look", "work"},
		"kind==committed":         {"base"},
		"kind==view":              {"look"},
		"parent==base":            {"look", "work"},
		"parent==base,kind!=view": {"work"},
		"labels.role":             {"base", "work"},
		"labels.role==rootfs":     {"work"},
		`name~=^(b|l)`:            {"base", "look"},
	} {
		var got []string
		err := ms.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
			got = append(got, info.Name)
			return nil
		}, filter)
		if err != nil {
			t.Fatalf("%q: %v", filter, err)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%q: got %q, want %q", filter, got, want)
		}
	}
	var n int
	err := ms.Walk(ctx, func(context.Context, snapshots.Info) error { n++; return nil }, "kind==view", "kind==active")
	if err != nil || n != 2 {
		t.Errorf("two filters (or): %d, %v", n, err)
	}
	if err := ms.Walk(ctx, nil, "kind=="); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad filter: %v, want InvalidArgument", err)
	}
	// fn may write: the walk's transaction is over when it runs.
	err = ms.Walk(ctx, func(ctx context.Context, info snapshots.Info) error {
		_, err := ms.UpdateInfo(ctx, snapshots.Info{Name: info.Name, Labels: map[string]string{"seen": "y"}}, "labels.seen")
		return err
	}, "kind==active")
	if err != nil {
		t.Fatal(err)
	}
}

func TestPersistenceAndRollback(t *testing.T) {
	ms, path := newMetaStore(t)
	ctx := context.Background()
	first := create(t, ms, snapshots.KindActive, "a", "")
	boom := errors.New("boom")
	var rolledBack Snapshot
	err := ms.Update(ctx, func(tx *Tx) error {
		rolledBack, _ = tx.CreateSnapshot(snapshots.KindActive, "b", "")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if err := ms.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ms.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ms, err = NewMetaStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	if _, err := ms.Stat(ctx, "a"); err != nil {
		t.Errorf("after reopen: %v", err)
	}
	if _, err := ms.Stat(ctx, "b"); !errdefs.IsNotFound(err) {
		t.Errorf("rolled back snapshot: %v", err)
	}
	again := create(t, ms, snapshots.KindActive, "c", "")
	if again.ID != rolledBack.ID || again.ID == first.ID {
		t.Errorf("IDs: first %s, rolled back %s, next %s: a rolled back ID is handed out again", first.ID, rolledBack.ID, again.ID)
	}
}
