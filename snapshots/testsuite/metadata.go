package testsuite

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/snapshots"
	"github.com/containerd/errdefs"
)

// testRemove removes parents after children only, and reuses keys.
func testRemove(t *testing.T, f *fixture) {
	f.layer("parent", "")
	f.prepare("child", "parent")
	err := f.sn.Remove(f.ctx, "parent")
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), `"parent"`) {
		t.Errorf("remove a parent: %v, want FailedPrecondition naming it", err)
	}
	f.stat("parent")
	f.remove("child")
	f.remove("parent")
	if _, err := f.sn.Stat(f.ctx, "parent"); !errdefs.IsNotFound(err) {
		t.Errorf("stat after remove: %v", err)
	}
	if err := f.sn.Remove(f.ctx, "parent"); !errdefs.IsNotFound(err) {
		t.Errorf("second remove: %v", err)
	}

	// Keys and names are free again once removed, whatever their kind.
	f.layer("c1", "")
	f.prepare("reuse", "c1")
	f.remove("reuse")
	f.view("reuse", "c1")
	f.remove("reuse")
	f.prepare("reuse", "")
	f.remove("c1")
	f.commit("c1", "reuse")
	if info := f.stat("c1"); info.Kind != snapshots.KindCommitted || info.Parent != "" {
		t.Errorf("recommitted c1: %+v", info)
	}
}

// testRemoveIntermediate removes a chain from the top down.
func testRemoveIntermediate(t *testing.T, f *fixture) {
	f.layer("base", "", writeFile("/a", "a", 0o644))
	f.layer("mid", "base", writeFile("/b", "b", 0o644))
	f.layer("top", "mid", remove("/a"))
	f.prepare("active", "top")
	for _, key := range []string{"base", "mid", "top"} {
		if err := f.sn.Remove(f.ctx, key); !errdefs.IsFailedPrecondition(err) {
			t.Errorf("remove %q under others: %v, want FailedPrecondition", key, err)
		}
	}
	for i, key := range []string{"active", "top", "mid", "base"} {
		f.remove(key)
		if n := len(f.walk()); n != 3-i {
			t.Errorf("after removing %q: %d snapshots left, want %d", key, n, 3-i)
		}
	}
}

// walk returns the names of the snapshots matching filters, sorted.
func (f *fixture) walk(filters ...string) []string {
	f.t.Helper()
	var names []string
	err := f.sn.Walk(f.ctx, func(_ context.Context, info snapshots.Info) error {
		names = append(names, info.Name)
		return nil
	}, filters...)
	if err != nil {
		f.t.Fatalf("%s: walk %q: %v", f.name, filters, err)
	}
	slices.Sort(names)
	return names
}

// testUpdate changes labels through each field path.
func testUpdate(t *testing.T, f *fixture) {
	f.prepare("k", "", snapshots.WithLabels(map[string]string{"a": "1", "b": "2"}))
	before := f.stat("k")
	update := func(labels map[string]string, paths ...string) snapshots.Info {
		t.Helper()
		info, err := f.sn.Update(f.ctx, snapshots.Info{Name: "k", Labels: labels}, paths...)
		if err != nil {
			t.Fatalf("update %q: %v", paths, err)
		}
		if stat := f.stat("k"); !maps.Equal(stat.Labels, info.Labels) {
			t.Errorf("update %q returned labels %v, stat says %v", paths, info.Labels, stat.Labels)
		}
		return info
	}
	info := update(map[string]string{"a": "10", "c": "3"}, "labels.a", "labels.b")
	if want := map[string]string{"a": "10"}; !maps.Equal(info.Labels, want) {
		t.Errorf("labels.a, labels.b: %v, want %v (absent deletes)", info.Labels, want)
	}
	if info.Updated.Before(before.Updated) || !info.Created.Equal(before.Created) || info.Kind != snapshots.KindActive {
		t.Errorf("update changed more than labels and time: %+v, before %+v", info, before)
	}
	if info = update(map[string]string{"z": "26"}, "labels"); !maps.Equal(info.Labels, map[string]string{"z": "26"}) {
		t.Errorf("labels: %v", info.Labels)
	}
	if info = update(map[string]string{"y": "25"}); !maps.Equal(info.Labels, map[string]string{"y": "25"}) {
		t.Errorf("no field paths: %v", info.Labels)
	}
	_, err := f.sn.Update(f.ctx, snapshots.Info{Name: "k", Kind: snapshots.KindCommitted, Parent: "x"}, "parent")
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("update parent: %v, want InvalidArgument", err)
	}
	if info := f.stat("k"); info.Kind != snapshots.KindActive || info.Parent != "" {
		t.Errorf("a refused update changed %+v", info)
	}
	f.commit("c", "k", snapshots.WithLabels(map[string]string{"c": "committed"}))
	if info := f.stat("c"); !maps.Equal(info.Labels, map[string]string{"c": "committed"}) {
		t.Errorf("commit labels %v: want those of the commit only", info.Labels)
	}
	if info := updateOf(t, f, "c", "labels.d"); info.Labels["d"] != "x" || info.Labels["c"] != "committed" {
		t.Errorf("update of a committed snapshot: %v", info.Labels)
	}
}

func updateOf(t *testing.T, f *fixture, name, path string) snapshots.Info {
	t.Helper()
	info, err := f.sn.Update(f.ctx, snapshots.Info{Name: name, Labels: map[string]string{"d": "x"}}, path)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// testWalk filters on every field and lets the walk function use the
// snapshotter.
func testWalk(t *testing.T, f *fixture) {
	f.prepare("a", "")
	f.commit("base", "a", snapshots.WithLabels(map[string]string{"role": "layer"}))
	f.prepare("work", "base", snapshots.WithLabels(map[string]string{"role": "rootfs"}))
	f.view("look", "base")
	f.prepare("other", "")
	for filter, want := range map[string][]string{
		"":                        {"base", "look", "other", "work"},
		"kind==committed":         {"base"},
		"kind==active":            {"other", "work"},
		"kind==view":              {"look"},
		"name==work":              {"work"},
		"parent==base":            {"look", "work"},
		"parent==base,kind!=view": {"work"},
		"labels.role":             {"base", "work"},
		"labels.role==rootfs":     {"work"},
		`name~=^(b|l)`:            {"base", "look"},
	} {
		if got := f.walk(filter); !slices.Equal(got, want) {
			t.Errorf("walk %q: %q, want %q", filter, got, want)
		}
	}
	if got := f.walk("kind==view", "name==other"); !slices.Equal(got, []string{"look", "other"}) {
		t.Errorf("two filters match either: %q", got)
	}
	if err := f.sn.Walk(f.ctx, nil, "kind=="); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad filter: %v, want InvalidArgument", err)
	}
	stop := errors.New("stop")
	err := f.sn.Walk(f.ctx, func(ctx context.Context, info snapshots.Info) error {
		if _, err := f.sn.Stat(ctx, info.Name); err != nil {
			return err
		}
		if info.Name == "other" {
			return f.sn.Remove(ctx, "other")
		}
		_, err := f.sn.Update(ctx, snapshots.Info{Name: info.Name, Labels: map[string]string{"seen": "y"}}, "labels.seen")
		return err
	})
	if err != nil {
		t.Fatalf("walk that stats, updates and removes: %v", err)
	}
	if got := f.walk("labels.seen==y"); !slices.Equal(got, []string{"base", "look", "work"}) {
		t.Errorf("labels set during the walk: %q", got)
	}
	if err := f.sn.Walk(f.ctx, func(context.Context, snapshots.Info) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("walk function's error: %v", err)
	}
}

// testUsage measures an active snapshot, then the committed one.
func testUsage(t *testing.T, f *fixture) {
	target := f.mount(f.prepare("k", ""))
	apply(t, target, []change{
		writeFile("/big", strings.Repeat("x", 1<<20), 0o644),
		mkdir("/d", 0o755), writeFile("/d/small", "s", 0o644),
	})
	active, err := f.sn.Usage(f.ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if active.Size < 1<<20 || active.Inodes < 4 {
		t.Errorf("usage of the active snapshot %+v: want at least 1 MiB and 4 inodes", active)
	}
	f.unmount(target)
	f.commit("c", "k")
	committed, err := f.sn.Usage(f.ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if committed.Size < 1<<20 || committed.Inodes < 4 {
		t.Errorf("usage of the committed snapshot %+v: want at least 1 MiB and 4 inodes", committed)
	}
	f.prepare("child", "c")
	f.view("view", "c")
	for _, key := range []string{"child", "view"} {
		if _, err := f.sn.Usage(f.ctx, key); err != nil {
			t.Errorf("usage of %q: %v", key, err)
		}
	}
	f.reopen()
	if again, err := f.sn.Usage(f.ctx, "c"); err != nil || again != committed {
		t.Errorf("usage after reopening: %+v, %v; want %+v", again, err, committed)
	}
}
