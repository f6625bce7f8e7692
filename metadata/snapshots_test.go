package metadata_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/content/local"
	"github.com/berth-dev/berth/leases"
	"github.com/berth-dev/berth/metadata"
	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/namespaces"
	"github.com/berth-dev/berth/snapshots"
	"github.com/berth-dev/berth/snapshots/native"
	"github.com/berth-dev/berth/snapshots/overlay"
	"github.com/berth-dev/berth/snapshots/testsuite"
	eventstypes "github.com/containerd/containerd/api/events"
	"google.golang.org/protobuf/proto"
)

// snapEnv is a metadata database over a local content store and real
// overlayfs and native snapshotters, all in one t.TempDir().
type snapEnv struct {
	db     *metadata.DB
	events *recorder
	// backends are the snapshotters the database namespaces, by name, and
	// roots the directories they keep their snapshots in.
	backends map[string]snapshots.Snapshotter
	roots    map[string]string
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("snapshot tests mount overlayfs, which needs root: run the tests as root (make test does)")
	}
}

func newSnapEnv(t *testing.T) *snapEnv {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	cs, err := local.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	ov, err := overlay.NewSnapshotter(filepath.Join(dir, "overlayfs"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ov.Close() })
	nat, err := native.NewSnapshotter(filepath.Join(dir, "native"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nat.Close() })
	e := &snapEnv{
		events:   &recorder{},
		backends: map[string]snapshots.Snapshotter{"overlayfs": ov, "native": nat},
		roots: map[string]string{
			"overlayfs": filepath.Join(dir, "overlayfs", "snapshots"),
			"native":    filepath.Join(dir, "native", "snapshots"),
		},
	}
	e.db, err = metadata.Open(filepath.Join(dir, "meta.db"), cs, metadata.WithPublisher(e.events), metadata.WithSnapshotters(e.backends))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.db.Close() })
	return e
}

// gc runs a collection and fails the test on error.
func (e *snapEnv) gc(t *testing.T) metadata.GCStats {
	t.Helper()
	st, err := e.db.GarbageCollect(context.Background())
	if err != nil {
		t.Fatalf("GarbageCollect: %v", err)
	}
	return st
}

// backendKeys lists the snapshots of backend name, read from the backend
// itself.
func (e *snapEnv) backendKeys(t *testing.T, name string) []string {
	t.Helper()
	var keys []string
	err := e.backends[name].Walk(context.Background(), func(_ context.Context, info snapshots.Info) error {
		keys = append(keys, info.Name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}

// dirs lists the snapshot directories of backend name on disk.
func (e *snapEnv) dirs(t *testing.T, name string) []string {
	t.Helper()
	entries, err := os.ReadDir(e.roots[name])
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, en := range entries {
		out = append(out, en.Name())
	}
	return out
}

// keys lists the snapshots that Walk shows in the namespace of ctx.
func keys(t *testing.T, ctx context.Context, s snapshots.Snapshotter, filters ...string) []string {
	t.Helper()
	var out []string
	err := s.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		out = append(out, info.Name)
		return nil
	}, filters...)
	if err != nil {
		t.Fatalf("walk %q: %v", filters, err)
	}
	slices.Sort(out)
	return out
}

func mustPrepare(t *testing.T, ctx context.Context, s snapshots.Snapshotter, key, parent string, opts ...snapshots.Opt) []mount.Mount {
	t.Helper()
	m, err := s.Prepare(ctx, key, parent, opts...)
	if err != nil {
		t.Fatalf("prepare %q over %q: %v", key, parent, err)
	}
	return m
}

func mustView(t *testing.T, ctx context.Context, s snapshots.Snapshotter, key, parent string, opts ...snapshots.Opt) []mount.Mount {
	t.Helper()
	m, err := s.View(ctx, key, parent, opts...)
	if err != nil {
		t.Fatalf("view %q over %q: %v", key, parent, err)
	}
	return m
}

func mustCommit(t *testing.T, ctx context.Context, s snapshots.Snapshotter, name, key string, opts ...snapshots.Opt) {
	t.Helper()
	if err := s.Commit(ctx, name, key, opts...); err != nil {
		t.Fatalf("commit %q as %q: %v", key, name, err)
	}
}

func mustStat(t *testing.T, ctx context.Context, s snapshots.Snapshotter, key string) snapshots.Info {
	t.Helper()
	info, err := s.Stat(ctx, key)
	if err != nil {
		t.Fatalf("stat %q: %v", key, err)
	}
	return info
}

// writable returns the directory that receives the writes of an active
// snapshot's mounts without mounting them: a bind mount's source or an
// overlay's upper directory. Enough to add files.
func writable(t *testing.T, mounts []mount.Mount) string {
	t.Helper()
	if len(mounts) == 1 {
		switch m := mounts[0]; m.Type {
		case "bind":
			return m.Source
		case "overlay":
			for _, o := range m.Options {
				if upper, ok := strings.CutPrefix(o, "upperdir="); ok {
					return upper
				}
			}
		}
	}
	t.Fatalf("mounts %+v have no directory to write to", mounts)
	return ""
}

// layer prepares "prepare-NAME" over parent, writes files into it and
// commits it as name with opts.
func layer(t *testing.T, ctx context.Context, s snapshots.Snapshotter, name, parent string, files map[string]string, opts ...snapshots.Opt) {
	t.Helper()
	dir := writable(t, mustPrepare(t, ctx, s, "prepare-"+name, parent))
	for p, data := range files {
		if err := os.WriteFile(filepath.Join(dir, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustCommit(t, ctx, s, name, "prepare-"+name, opts...)
}

// inNamespace runs the calls of the shared suite, whose context has no
// namespace, in namespace ns.
type inNamespace struct {
	s  *metadata.SnapshotStore
	ns string
}

func (n inNamespace) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, n.ns)
}

func (n inNamespace) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	return n.s.Stat(n.ctx(ctx), key)
}

func (n inNamespace) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	return n.s.Update(n.ctx(ctx), info, fieldpaths...)
}

func (n inNamespace) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	return n.s.Usage(n.ctx(ctx), key)
}

func (n inNamespace) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	return n.s.Mounts(n.ctx(ctx), key)
}

func (n inNamespace) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return n.s.Prepare(n.ctx(ctx), key, parent, opts...)
}

func (n inNamespace) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return n.s.View(n.ctx(ctx), key, parent, opts...)
}

func (n inNamespace) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	return n.s.Commit(n.ctx(ctx), name, key, opts...)
}

func (n inNamespace) Remove(ctx context.Context, key string) error {
	return n.s.Remove(n.ctx(ctx), key)
}

func (n inNamespace) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	return n.s.Walk(n.ctx(ctx), fn, filters...)
}

func (n inNamespace) Close() error { return n.s.Close() }

// TestSnapshotStoreSuite runs the suite every snapshotter passes against
// the namespaced store, over each backend kept in the suite's root.
func TestSnapshotStoreSuite(t *testing.T) {
	requireRoot(t)
	backends := map[string]func(root string) (snapshots.Snapshotter, func() error, error){
		"overlayfs": func(root string) (snapshots.Snapshotter, func() error, error) {
			s, err := overlay.NewSnapshotter(root)
			return s, func() error { return s.Close() }, err
		},
		"native": func(root string) (snapshots.Snapshotter, func() error, error) {
			s, err := native.NewSnapshotter(root)
			return s, func() error { return s.Close() }, err
		},
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			testsuite.SnapshotterSuite(t, "metadata over "+name, func(_ context.Context, root string) (snapshots.Snapshotter, func() error, error) {
				be, closeBackend, err := open(root)
				if err != nil {
					return nil, nil, err
				}
				cs, err := local.NewStore(filepath.Join(root, "content"))
				if err != nil {
					closeBackend()
					return nil, nil, err
				}
				db, err := metadata.Open(filepath.Join(root, "meta.db"), cs, metadata.WithSnapshotters(map[string]snapshots.Snapshotter{name: be}))
				if err != nil {
					closeBackend()
					return nil, nil, err
				}
				closeAll := func() error {
					err := db.Close()
					if cerr := closeBackend(); err == nil {
						err = cerr
					}
					return err
				}
				return inNamespace{s: db.Snapshotter(name), ns: "suite"}, closeAll, nil
			})
		})
	}
}

func TestSnapshotsUnknownSnapshotter(t *testing.T) {
	e := newSnapEnv(t)
	if s := e.db.Snapshotter("zfs"); s != nil {
		t.Errorf("Snapshotter(zfs) = %v, want nil", s)
	}
	_, err := e.db.Snapshotter("overlayfs").Stat(context.Background(), "k")
	wantErr(t, err, isPrecondition, "namespace is required")
}

// TestSnapshotsNamespaced: a key is a different snapshot in each
// namespace, with a backend snapshot of its own.
func TestSnapshotsNamespaced(t *testing.T) {
	e := newSnapEnv(t)
	s := e.db.Snapshotter("overlayfs")
	a, b := nsCtx("a"), nsCtx("b")

	ma := mustPrepare(t, a, s, "k", "", snapshots.WithLabels(map[string]string{"ns": "a"}))
	mb := mustPrepare(t, b, s, "k", "", snapshots.WithLabels(map[string]string{"ns": "b"}))
	if writable(t, ma) == writable(t, mb) {
		t.Fatalf("key k in namespaces a and b share directory %s", writable(t, ma))
	}
	if err := os.WriteFile(filepath.Join(writable(t, ma), "f"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, a, s, "base", "k")
	if info := mustStat(t, b, s, "k"); info.Kind != snapshots.KindActive || info.Labels["ns"] != "b" {
		t.Errorf("k in b after committing k in a: %+v, want b's active snapshot", info)
	}
	if info := mustStat(t, a, s, "base"); info.Kind != snapshots.KindCommitted {
		t.Errorf("base in a: %+v", info)
	}
	if got := keys(t, a, s); !slices.Equal(got, []string{"base"}) {
		t.Errorf("walk in a = %q, want [base]", got)
	}
	if got := keys(t, b, s); !slices.Equal(got, []string{"k"}) {
		t.Errorf("walk in b = %q, want [k]", got)
	}
	if got := e.backendKeys(t, "overlayfs"); len(got) != 2 {
		t.Errorf("backend snapshots = %q, want one per namespace", got)
	}
	// Removing b's k leaves a's base.
	if err := s.Remove(b, "k"); err != nil {
		t.Fatal(err)
	}
	if got := e.backendKeys(t, "overlayfs"); len(got) != 1 {
		t.Errorf("backend snapshots after removing b's k = %q, want a's base", got)
	}
	// Snapshotters are namespaced apart too.
	if got := keys(t, a, e.db.Snapshotter("native")); len(got) != 0 {
		t.Errorf("native snapshots in a = %q, want none", got)
	}
}

// TestSnapshotsOtherNamespace: a snapshot of another namespace is not
// found, and the error names the namespace that has it.
func TestSnapshotsOtherNamespace(t *testing.T) {
	e := newSnapEnv(t)
	s := e.db.Snapshotter("overlayfs")
	a, b := nsCtx("a"), nsCtx("b")
	layer(t, a, s, "base", "", nil)
	mustPrepare(t, b, s, "k", "")

	_, err := s.Stat(b, "base")
	wantErr(t, err, isNotFound, `"base"`, `namespace "b"`, `namespace "a"`)
	_, err = s.Prepare(b, "child", "base")
	wantErr(t, err, isNotFound, `"child"`, `"base"`, `namespace "b"`, `namespace "a"`)
	_, err = s.View(b, "look", "base")
	wantErr(t, err, isNotFound, `"look"`, `"base"`, `namespace "a"`)
	wantErr(t, s.Remove(b, "base"), isNotFound, `"base"`, `namespace "b"`, `namespace "a"`)
	_, err = s.Mounts(b, "base")
	wantErr(t, err, isNotFound, `"base"`, `namespace "b"`)
	_, err = s.Usage(b, "base")
	wantErr(t, err, isNotFound, `"base"`, `namespace "b"`)
	_, err = s.Update(b, snapshots.Info{Name: "base", Labels: map[string]string{"x": "y"}})
	wantErr(t, err, isNotFound, `"base"`, `namespace "b"`)
	// Nothing failed half way.
	if got := keys(t, b, s); !slices.Equal(got, []string{"k"}) {
		t.Errorf("walk in b after failed calls = %q, want [k]", got)
	}
	// A key found nowhere gets no hint.
	_, err = s.Stat(b, "nowhere")
	wantErr(t, err, isNotFound, `"nowhere"`, `namespace "b"`)
	if strings.Contains(err.Error(), "exists in") {
		t.Errorf("stat of a key in no namespace: %v, want no hint", err)
	}
}

// TestSnapshotsErrors checks the error class of each refused call, and
// that the error names the key and the namespace.
func TestSnapshotsErrors(t *testing.T) {
	e := newSnapEnv(t)
	s := e.db.Snapshotter("overlayfs")
	ctx := nsCtx("errs")
	layer(t, ctx, s, "base", "", map[string]string{"f": "base"})
	mustPrepare(t, ctx, s, "active", "base")
	mustView(t, ctx, s, "view", "base")

	for _, tc := range []struct {
		desc  string
		err   error
		is    func(error) bool
		parts []string
	}{
		{"prepare of a taken key", prepareErr(ctx, s, "active", ""), isAlreadyExists, []string{`"active"`}},
		{"prepare over a committed name", prepareErr(ctx, s, "base", ""), isAlreadyExists, []string{`"base"`}},
		{"view of a taken key", viewErr(ctx, s, "view", "base"), isAlreadyExists, []string{`"view"`}},
		{"prepare over a missing parent", prepareErr(ctx, s, "x", "missing"), isNotFound, []string{`"x"`, `"missing"`}},
		{"prepare over an active parent", prepareErr(ctx, s, "x", "active"), isInvalid, []string{`"x"`, `"active"`}},
		{"view over a view", viewErr(ctx, s, "x", "view"), isInvalid, []string{`"x"`, `"view"`}},
		{"prepare of an empty key", prepareErr(ctx, s, "", ""), isInvalid, []string{"key"}},
		{"commit of a view", s.Commit(ctx, "c", "view"), isPrecondition, []string{`"view"`}},
		{"commit of a committed snapshot", s.Commit(ctx, "c", "base"), isPrecondition, []string{`"base"`}},
		{"commit of a missing key", s.Commit(ctx, "c", "missing"), isNotFound, []string{`"missing"`}},
		{"commit onto a taken name", s.Commit(ctx, "view", "active"), isAlreadyExists, []string{`"view"`}},
		{"remove of a parent", s.Remove(ctx, "base"), isPrecondition, []string{`"base"`}},
		{"remove of a missing key", s.Remove(ctx, "missing"), isNotFound, []string{`"missing"`}},
		{"mounts of a committed snapshot", mountsErr(ctx, s, "base"), isPrecondition, []string{`"base"`}},
		{"mounts of a missing key", mountsErr(ctx, s, "missing"), isNotFound, []string{`"missing"`}},
		{"update of a missing key", updateErr(ctx, s, "missing", "labels"), isNotFound, []string{`"missing"`}},
		{"update of the parent", updateErr(ctx, s, "active", "parent"), isInvalid, []string{`"active"`, `"parent"`}},
		{"usage of a missing key", usageErr(ctx, s, "missing"), isNotFound, []string{`"missing"`}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			wantErr(t, tc.err, tc.is, append(tc.parts, `namespace "errs"`)...)
		})
	}
	// The failed calls changed nothing.
	if got := keys(t, ctx, s); !slices.Equal(got, []string{"active", "base", "view"}) {
		t.Errorf("snapshots after failed calls = %q", got)
	}
	if info := mustStat(t, ctx, s, "active"); info.Kind != snapshots.KindActive || info.Parent != "base" {
		t.Errorf("active after failed commits: %+v", info)
	}
	if got := e.backendKeys(t, "overlayfs"); len(got) != 3 {
		t.Errorf("backend snapshots after failed calls = %q, want 3", got)
	}
	if got := e.dirs(t, "overlayfs"); len(got) != 3 {
		t.Errorf("overlay directories after failed calls = %q, want 3", got)
	}
}

func prepareErr(ctx context.Context, s snapshots.Snapshotter, key, parent string) error {
	_, err := s.Prepare(ctx, key, parent)
	return err
}

func viewErr(ctx context.Context, s snapshots.Snapshotter, key, parent string) error {
	_, err := s.View(ctx, key, parent)
	return err
}

func mountsErr(ctx context.Context, s snapshots.Snapshotter, key string) error {
	_, err := s.Mounts(ctx, key)
	return err
}

func usageErr(ctx context.Context, s snapshots.Snapshotter, key string) error {
	_, err := s.Usage(ctx, key)
	return err
}

func updateErr(ctx context.Context, s snapshots.Snapshotter, key string, paths ...string) error {
	_, err := s.Update(ctx, snapshots.Info{Name: key, Labels: map[string]string{"k": "v"}}, paths...)
	return err
}

// TestSnapshotsLifecycle walks one snapshot through the states of the
// Snapshotter godoc: prepare, mounts, usage, commit, view, remove.
func TestSnapshotsLifecycle(t *testing.T) {
	e := newSnapEnv(t)
	for _, name := range []string{"overlayfs", "native"} {
		t.Run(name, func(t *testing.T) {
			s := e.db.Snapshotter(name)
			ctx := nsCtx("life-" + name)
			m := mustPrepare(t, ctx, s, "work", "", snapshots.WithLabels(map[string]string{"phase": "work"}))
			again, err := s.Mounts(ctx, "work")
			if err != nil || !slices.EqualFunc(again, m, mountEqual) {
				t.Errorf("Mounts(work) = %+v, %v; Prepare returned %+v", again, err, m)
			}
			if err := os.WriteFile(filepath.Join(writable(t, m), "data"), make([]byte, 64<<10), 0o644); err != nil {
				t.Fatal(err)
			}
			u, err := s.Usage(ctx, "work")
			if err != nil || u.Size < 64<<10 || u.Inodes < 2 {
				t.Errorf("usage of the active snapshot = %+v, %v; want at least 64 KiB and 2 inodes", u, err)
			}
			info := mustStat(t, ctx, s, "work")
			if info.Kind != snapshots.KindActive || info.Labels["phase"] != "work" || info.Created.IsZero() || !info.Created.Equal(info.Updated) {
				t.Errorf("stat of the active snapshot = %+v", info)
			}

			mustCommit(t, ctx, s, "layer", "work", snapshots.WithLabels(map[string]string{"phase": "done"}))
			_, err = s.Stat(ctx, "work")
			wantErr(t, err, isNotFound, `"work"`)
			info = mustStat(t, ctx, s, "layer")
			if info.Kind != snapshots.KindCommitted || info.Parent != "" || !maps.Equal(info.Labels, map[string]string{"phase": "done"}) {
				t.Errorf("stat after commit = %+v, want committed with the commit's labels only", info)
			}
			if cu, err := s.Usage(ctx, "layer"); err != nil || cu.Size < 64<<10 {
				t.Errorf("usage of the committed snapshot = %+v, %v; want at least 64 KiB", cu, err)
			}

			mustView(t, ctx, s, "look", "layer")
			if info := mustStat(t, ctx, s, "look"); info.Kind != snapshots.KindView || info.Parent != "layer" {
				t.Errorf("stat of the view = %+v", info)
			}
			mustPrepare(t, ctx, s, "child", "layer")
			wantErr(t, s.Remove(ctx, "layer"), isPrecondition, `"layer"`, "2 snapshot(s)")
			for _, k := range []string{"look", "child", "layer"} {
				if err := s.Remove(ctx, k); err != nil {
					t.Fatalf("remove %q: %v", k, err)
				}
			}
			if got := keys(t, ctx, s); len(got) != 0 {
				t.Errorf("snapshots after removing all = %q", got)
			}
			if got := e.backendKeys(t, name); len(got) != 0 {
				t.Errorf("backend snapshots after removing all = %q", got)
			}
			if got := e.dirs(t, name); len(got) != 0 {
				t.Errorf("backend directories after removing all = %q", got)
			}
		})
	}
}

func mountEqual(a, b mount.Mount) bool {
	return a.Type == b.Type && a.Source == b.Source && slices.Equal(a.Options, b.Options)
}

func TestSnapshotsUpdate(t *testing.T) {
	e := newSnapEnv(t)
	s := e.db.Snapshotter("overlayfs")
	ctx := nsCtx("upd")
	mustPrepare(t, ctx, s, "k", "", snapshots.WithLabels(map[string]string{"a": "1", "b": "2"}))
	before := mustStat(t, ctx, s, "k")
	time.Sleep(2 * time.Millisecond)
	for _, step := range []struct {
		labels map[string]string
		paths  []string
		want   map[string]string
	}{
		{map[string]string{"c": "3", "a": "ignored"}, []string{"labels.c"}, map[string]string{"a": "1", "b": "2", "c": "3"}},
		{nil, []string{"labels.a"}, map[string]string{"b": "2", "c": "3"}},
		{map[string]string{"z": "26"}, []string{"labels"}, map[string]string{"z": "26"}},
		{map[string]string{"y": "25"}, nil, map[string]string{"y": "25"}},
	} {
		got, err := s.Update(ctx, snapshots.Info{Name: "k", Labels: step.labels}, step.paths...)
		if err != nil {
			t.Fatalf("update %v %q: %v", step.labels, step.paths, err)
		}
		if !maps.Equal(got.Labels, step.want) {
			t.Errorf("update %v %q: labels %v, want %v", step.labels, step.paths, got.Labels, step.want)
		}
		if stat := mustStat(t, ctx, s, "k"); !maps.Equal(stat.Labels, step.want) {
			t.Errorf("stat after update %q: labels %v, want %v", step.paths, stat.Labels, step.want)
		}
	}
	after := mustStat(t, ctx, s, "k")
	if !after.Created.Equal(before.Created) || !after.Updated.After(before.Updated) || after.Kind != snapshots.KindActive {
		t.Errorf("update changed more than labels and time: %+v, before %+v", after, before)
	}
	_, err := s.Update(ctx, snapshots.Info{Name: "k", Labels: map[string]string{"k": strings.Repeat("v", 5000)}}, "labels.k")
	wantErr(t, err, isInvalid, `"k"`, "4096")
	// Labels of the record only: the backend's stay as they were.
	binfo, err := e.backends["overlayfs"].Stat(context.Background(), e.backendKeys(t, "overlayfs")[0])
	if err != nil || len(binfo.Labels) != 0 {
		t.Errorf("backend labels = %v, %v; want none", binfo.Labels, err)
	}
}

func TestSnapshotsWalkFilters(t *testing.T) {
	e := newSnapEnv(t)
	s := e.db.Snapshotter("overlayfs")
	ctx := nsCtx("walk")
	layer(t, ctx, s, "base", "", nil, snapshots.WithLabels(map[string]string{"role": "layer"}))
	mustPrepare(t, ctx, s, "work", "base", snapshots.WithLabels(map[string]string{"role": "rootfs", "x": "1"}))
	mustView(t, ctx, s, "look", "base")
	mustPrepare(t, ctx, s, "other", "")
	// Another namespace's snapshots never show.
	mustPrepare(t, nsCtx("elsewhere"), s, "work", "")
	for filter, want := range map[string][]string{
		"":                        {"base", "look", "other", "work"},
		"kind==committed":         {"base"},
		"kind==active":            {"other", "work"},
		"kind==view":              {"look"},
		"kind!=active":            {"base", "look"},
		"name==work":              {"work"},
		"parent==base":            {"look", "work"},
		`parent==""`:              {"base", "other"},
		"parent==base,kind!=view": {"work"},
		"labels.role":             {"base", "work"},
		"labels.role==rootfs":     {"work"},
		"labels.x==1":             {"work"},
		`name~=^(b|l)`:            {"base", "look"},
	} {
		if got := keys(t, ctx, s, filter); !slices.Equal(got, want) {
			t.Errorf("walk %q = %q, want %q", filter, got, want)
		}
	}
	if got := keys(t, ctx, s, "kind==view", "name==other"); !slices.Equal(got, []string{"look", "other"}) {
		t.Errorf("two filters match either: %q", got)
	}
	wantErr(t, s.Walk(ctx, func(context.Context, snapshots.Info) error { return nil }, "kind=="), isInvalid)
}

// TestSnapshotsLease: what is made under a lease is listed in it and kept
// by it.
func TestSnapshotsLease(t *testing.T) {
	e := newSnapEnv(t)
	s := e.db.Snapshotter("overlayfs")
	ctx := nsCtx("leased")
	lm := e.db.Leases()
	if _, err := lm.Create(ctx, leases.Lease{ID: "unpack"}); err != nil {
		t.Fatal(err)
	}
	lctx := leases.WithLease(ctx, "unpack")
	layer(t, lctx, s, "layer-1", "", map[string]string{"one": "1"})
	layer(t, lctx, s, "layer-2", "layer-1", map[string]string{"two": "2"})
	mustView(t, lctx, s, "leased-view", "layer-2")
	res, err := lm.ListResources(ctx, "unpack")
	if err != nil {
		t.Fatal(err)
	}
	want := []leases.Resource{
		{Type: "snapshots/overlayfs", ID: "layer-1"},
		{Type: "snapshots/overlayfs", ID: "layer-2"},
		{Type: "snapshots/overlayfs", ID: "leased-view"},
	}
	// The active snapshots committed are gone from the lease too.
	if !slices.Equal(res, want) {
		t.Errorf("lease resources = %v, want %v", res, want)
	}
	// So is a snapshot removed.
	if err := s.Remove(lctx, "leased-view"); err != nil {
		t.Fatal(err)
	}
	if res, err := lm.ListResources(ctx, "unpack"); err != nil || !slices.Equal(res, want[:2]) {
		t.Errorf("lease resources after a removal = %v, %v; want %v", res, err, want[:2])
	}
	mustView(t, lctx, s, "leased-view", "layer-2")
	// An unknown lease in the context fails the create and leaves nothing.
	_, err = s.Prepare(leases.WithLease(ctx, "missing"), "orphan", "")
	wantErr(t, err, isNotFound, `"missing"`)
	if _, err := s.Stat(ctx, "orphan"); !isNotFound(err) {
		t.Errorf("prepare under a missing lease left %q: %v", "orphan", err)
	}
	if got := e.backendKeys(t, "overlayfs"); len(got) != 3 {
		t.Errorf("backend snapshots = %q, want the 3 leased ones", got)
	}

	e.gc(t)
	if got := keys(t, ctx, s); !slices.Equal(got, []string{"layer-1", "layer-2", "leased-view"}) {
		t.Errorf("snapshots after a collection = %q, want the lease to keep them all", got)
	}
	// The lease goes: so do the snapshots it held, view included.
	if err := lm.Delete(ctx, "unpack", true); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, ctx, s); len(got) != 0 {
		t.Errorf("snapshots after the lease was deleted = %q, want none", got)
	}
	if got := e.dirs(t, "overlayfs"); len(got) != 0 {
		t.Errorf("overlay directories after the lease was deleted = %q, want none", got)
	}
}

func TestSnapshotsNamespaceDelete(t *testing.T) {
	e := newSnapEnv(t)
	ctx := nsCtx("full")
	ov, nat := e.db.Snapshotter("overlayfs"), e.db.Snapshotter("native")
	layer(t, ctx, ov, "base", "", nil)
	mustPrepare(t, ctx, ov, "work", "base")
	mustPrepare(t, ctx, nat, "n", "")
	err := e.db.Namespaces().Delete(ctx, "full")
	wantErr(t, err, isPrecondition, `namespace "full"`, "overlayfs snapshots (2)", "native snapshots (1)")
	for _, k := range []string{"work", "base"} {
		if err := ov.Remove(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	err = e.db.Namespaces().Delete(ctx, "full")
	wantErr(t, err, isPrecondition, "native snapshots (1)")
	if strings.Contains(err.Error(), "overlayfs") {
		t.Errorf("namespace delete: %v, names overlayfs with none left", err)
	}
	if err := nat.Remove(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Namespaces().Delete(ctx, "full"); err != nil {
		t.Errorf("delete of a namespace whose snapshots are gone: %v", err)
	}
}

func protoEqual(a, b any) bool {
	am, ok1 := a.(proto.Message)
	bm, ok2 := b.(proto.Message)
	return ok1 && ok2 && proto.Equal(am, bm)
}

func TestSnapshotsEvents(t *testing.T) {
	e := newSnapEnv(t)
	s := e.db.Snapshotter("overlayfs")
	ctx := nsCtx("ev")
	mustPrepare(t, ctx, s, "work", "")
	mustCommit(t, ctx, s, "base", "work")
	mustView(t, ctx, s, "look", "base")
	if err := s.Remove(ctx, "look"); err != nil {
		t.Fatal(err)
	}
	// Failures publish nothing.
	_ = prepareErr(ctx, s, "bad", "missing")
	_ = s.Remove(ctx, "base-missing")
	_ = s.Commit(ctx, "x", "missing")

	got := e.events.take()
	want := []published{
		{"ev", "/snapshot/prepare", &eventstypes.SnapshotPrepare{Key: "work", Snapshotter: "overlayfs"}},
		{"ev", "/snapshot/commit", &eventstypes.SnapshotCommit{Key: "work", Name: "base", Snapshotter: "overlayfs"}},
		{"ev", "/snapshot/prepare", &eventstypes.SnapshotPrepare{Key: "look", Parent: "base", Snapshotter: "overlayfs"}},
		{"ev", "/snapshot/remove", &eventstypes.SnapshotRemove{Key: "look", Snapshotter: "overlayfs"}},
	}
	if len(got) != len(want) {
		t.Fatalf("events = %q, want %q", topics(got), topics(want))
	}
	for i := range want {
		if got[i].Namespace != want[i].Namespace || got[i].Topic != want[i].Topic || !protoEqual(got[i].Event, want[i].Event) {
			t.Errorf("event %d = %s %s %v, want %s %s %v", i, got[i].Namespace, got[i].Topic, got[i].Event, want[i].Namespace, want[i].Topic, want[i].Event)
		}
	}
}

// TestSnapshotsRemoveNotifiesGC: a removal may leave its parents
// unreferenced, so the scheduler is told; failed calls tell it nothing.
func TestSnapshotsRemoveNotifiesGC(t *testing.T) {
	e := newSnapEnv(t)
	s := e.db.Snapshotter("overlayfs")
	ctx := nsCtx("notify")
	calls := 0
	e.db.SetMutationCallback(func() { calls++ })
	layer(t, ctx, s, "base", "", nil)
	mustPrepare(t, ctx, s, "work", "base")
	if calls != 0 {
		t.Errorf("prepare and commit notified the collector %d times", calls)
	}
	_ = s.Remove(ctx, "base")
	_ = s.Remove(ctx, "missing")
	if calls != 0 {
		t.Errorf("failed removals notified the collector %d times", calls)
	}
	if err := s.Remove(ctx, "work"); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("a removal notified the collector %d times, want once", calls)
	}
}
