package metadata_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/containers"
	"github.com/berth-dev/berth/leases"
	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/typeurl/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
)

// anyOf is an Any of typeURL holding value as its bytes.
func anyOf(typeURL, value string) *anypb.Any {
	return &anypb.Any{TypeUrl: typeURL, Value: []byte(value)}
}

// specOf is an OCI runtime spec Any whose bytes are s (the store keeps
// the bytes as they come, it never decodes them).
func specOf(s string) *anypb.Any { return anyOf(containers.SpecTypeURL, s) }

// newContainer is a valid container with every field set.
func newContainer(id string) containers.Container {
	return containers.Container{
		ID:     id,
		Labels: map[string]string{"app": id},
		Image:  "docker.io/library/busybox:latest",
		Runtime: containers.RuntimeInfo{
			Name:    "io.containerd.runc.v2",
			Options: anyOf("containerd.runc.v1.Options", "binary=runc"),
		},
		Spec:        specOf(`{"ociVersion":"1.1.0"}`),
		SnapshotKey: id,
		Snapshotter: "overlayfs",
		Extensions:  map[string]typeurl.Any{"ext": anyOf("example.com/Ext", "x")},
		SandboxID:   "pod-1",
	}
}

// ignoreTimes compares containers without their timestamps.
var ignoreTimes = cmpopts.IgnoreFields(containers.Container{}, "CreatedAt", "UpdatedAt")

func containerDiff(want, got containers.Container) string {
	return cmp.Diff(want, got, protocmp.Transform(), ignoreTimes, cmpopts.EquateEmpty())
}

func containerIDs(cs []containers.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	slices.Sort(out)
	return out
}

func mustCreateContainer(t *testing.T, ctx context.Context, s containers.Store, c containers.Container) containers.Container {
	t.Helper()
	created, err := s.Create(ctx, c)
	if err != nil {
		t.Fatalf("create container %q: %v", c.ID, err)
	}
	return created
}

func TestContainerCreateGet(t *testing.T) {
	e := newEnv(t)
	cs := e.db.Containers()
	ctx := nsCtx("default")
	in := newContainer("web")
	created := mustCreateContainer(t, ctx, cs, in)
	if created.CreatedAt.IsZero() || !created.CreatedAt.Equal(created.UpdatedAt) {
		t.Errorf("CreatedAt %v, UpdatedAt %v: want both set and equal", created.CreatedAt, created.UpdatedAt)
	}
	got, err := cs.Get(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if d := containerDiff(in, got); d != "" {
		t.Errorf("Get (-want +got):\n%s", d)
	}
	if !got.CreatedAt.Equal(created.CreatedAt) || !got.UpdatedAt.Equal(created.UpdatedAt) {
		t.Errorf("stored times %v/%v, want %v", got.CreatedAt, got.UpdatedAt, created.CreatedAt)
	}

	wantEvents := []published{{Namespace: "default", Topic: "/containers/create", Event: &eventstypes.ContainerCreate{
		ID: "web", Image: in.Image,
		Runtime: &eventstypes.ContainerCreate_Runtime{Name: "io.containerd.runc.v2", Options: anyOf("containerd.runc.v1.Options", "binary=runc")},
	}}}
	if d := cmp.Diff(wantEvents, e.events.take(), protocmp.Transform()); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}

	_, err = cs.Create(ctx, in)
	wantErr(t, err, isAlreadyExists, `container "web"`, `namespace "default"`)
	if evs := e.events.take(); len(evs) != 0 {
		t.Errorf("a failed create published %v", topics(evs))
	}

	// The minimum: an ID, a runtime and a spec. Absent Anys stay absent.
	minimal := containers.Container{ID: "min", Runtime: containers.RuntimeInfo{Name: "io.containerd.runc.v2"}, Spec: specOf("{}")}
	mustCreateContainer(t, ctx, cs, minimal)
	got, err = cs.Get(ctx, "min")
	if err != nil {
		t.Fatal(err)
	}
	if d := containerDiff(minimal, got); d != "" {
		t.Errorf("Get minimal (-want +got):\n%s", d)
	}
	if got.Runtime.Options != nil {
		t.Errorf("runtime options = %#v, want nil", got.Runtime.Options)
	}
}

func TestContainerValidation(t *testing.T) {
	e := newEnv(t)
	cs := e.db.Containers()
	ctx := nsCtx("default")
	with := func(fn func(*containers.Container)) containers.Container {
		c := newContainer("c")
		fn(&c)
		return c
	}
	for _, tc := range []struct {
		name string
		c    containers.Container
		want string
	}{
		{"no id", with(func(c *containers.Container) { c.ID = "" }), "must not be empty"},
		{"bad id", with(func(c *containers.Container) { c.ID = "-lead" }), `identifier "-lead" must match`},
		{"slash id", with(func(c *containers.Container) { c.ID = "a/b" }), "must match"},
		{"long id", with(func(c *containers.Container) { c.ID = strings.Repeat("a", 77) }), "longer than the maximum of 76"},
		{"big label", with(func(c *containers.Container) { c.Labels = map[string]string{"k": strings.Repeat("v", 4096)} }), `label "k"`},
		{"empty label key", with(func(c *containers.Container) { c.Labels = map[string]string{"": "v"} }), "key must not be empty"},
		{"no runtime", with(func(c *containers.Container) { c.Runtime.Name = "" }), "runtime name must be set"},
		{"no spec", with(func(c *containers.Container) { c.Spec = nil }), "spec must be set"},
		{"typed nil spec", with(func(c *containers.Container) { c.Spec = (*anypb.Any)(nil) }), "spec must be set"},
		{"key without snapshotter", with(func(c *containers.Container) { c.Snapshotter = "" }), `snapshotter must be set with snapshot key "c"`},
		{"empty extension name", with(func(c *containers.Container) { c.Extensions = map[string]typeurl.Any{"": specOf("")} }), "extension names must not be empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cs.Create(ctx, tc.c)
			wantErr(t, err, isInvalid, tc.want)
		})
	}
	if list, _ := cs.List(ctx); len(list) != 0 {
		t.Errorf("containers after failed creates: %v", containerIDs(list))
	}
	if evs := e.events.take(); len(evs) != 0 {
		t.Errorf("failed creates published %v", topics(evs))
	}
	_, err := cs.Create(nsCtx("Bad/NS"), newContainer("c"))
	wantErr(t, err, isInvalid, "namespace")
	_, err = cs.Create(context.Background(), newContainer("c"))
	wantErr(t, err, isPrecondition, "namespace is required")
}

func TestContainerNotFoundElsewhere(t *testing.T) {
	e := newEnv(t)
	cs := e.db.Containers()
	mustCreateContainer(t, nsCtx("default"), cs, newContainer("web"))

	k8s := nsCtx("k8s.io")
	_, err := cs.Get(k8s, "web")
	wantErr(t, err, isNotFound, `container "web" is not in namespace "k8s.io"`, `it exists in namespace "default"`, "-n default")
	_, err = cs.Update(k8s, newContainer("web"), "labels")
	wantErr(t, err, isNotFound, `it exists in namespace "default"`)
	wantErr(t, cs.Delete(k8s, "web"), isNotFound, `it exists in namespace "default"`)

	_, err = cs.Get(nsCtx("default"), "nope")
	wantErr(t, err, isNotFound, `container "nope" in namespace "default"`)
	if strings.Contains(err.Error(), "exists in") {
		t.Errorf("error %q hints at a namespace for a container that is nowhere", err)
	}
}

func TestContainerList(t *testing.T) {
	e := newEnv(t)
	cs := e.db.Containers()
	ctx := nsCtx("default")
	a := newContainer("a")
	b := newContainer("b")
	b.Image, b.Runtime.Name, b.Snapshotter, b.SandboxID = "docker.io/library/alpine:3", "io.containerd.runsc.v1", "native", ""
	b.Labels = map[string]string{"app": "b", "tier": "db"}
	c := containers.Container{ID: "c", Runtime: containers.RuntimeInfo{Name: "io.containerd.runc.v2"}, Spec: specOf("{}")}
	for _, x := range []containers.Container{a, b, c} {
		mustCreateContainer(t, ctx, cs, x)
	}
	mustCreateContainer(t, nsCtx("other"), cs, newContainer("a-elsewhere"))
	for _, tc := range []struct {
		filters []string
		want    []string
	}{
		{nil, []string{"a", "b", "c"}},
		{[]string{"id==b"}, []string{"b"}},
		{[]string{"id!=b"}, []string{"a", "c"}},
		{[]string{"image==docker.io/library/busybox:latest"}, []string{"a"}},
		{[]string{"image"}, []string{"a", "b"}},
		{[]string{"runtime.name==io.containerd.runsc.v1"}, []string{"b"}},
		{[]string{`runtime.name~=runc`}, []string{"a", "c"}},
		{[]string{"labels.app==a"}, []string{"a"}},
		{[]string{"labels.tier"}, []string{"b"}},
		{[]string{"snapshotter==native"}, []string{"b"}},
		{[]string{"snapshotkey==a"}, []string{"a"}},
		{[]string{"sandbox==pod-1"}, []string{"a"}},
		{[]string{"labels.app==a", "id==c"}, []string{"a", "c"}},
		{[]string{"image,labels.tier==db"}, []string{"b"}},
		{[]string{"runtime"}, nil},
		{[]string{"id==nothing"}, nil},
	} {
		got, err := cs.List(ctx, tc.filters...)
		if err != nil {
			t.Fatalf("List(%q): %v", tc.filters, err)
		}
		if ids := containerIDs(got); !slices.Equal(ids, tc.want) {
			t.Errorf("List(%q) = %v, want %v", tc.filters, ids, tc.want)
		}
	}
	got, err := cs.List(ctx, "id==a")
	if err != nil || len(got) != 1 {
		t.Fatalf("List(id==a) = %v, %v", got, err)
	}
	if d := containerDiff(a, got[0]); d != "" {
		t.Errorf("listed container (-want +got):\n%s", d)
	}
	_, err = cs.List(ctx, "id==")
	wantErr(t, err, isInvalid)
	if got, _ := cs.List(nsCtx("empty")); len(got) != 0 {
		t.Errorf("List in an empty namespace = %v", containerIDs(got))
	}
}

// TestContainerUpdate checks containerd's field-mask rules: each case
// starts from newContainer("c") and updates it with upd and paths.
func TestContainerUpdate(t *testing.T) {
	other := containers.Container{
		ID:     "c",
		Labels: map[string]string{"app": "changed", "new": "1"},
		Image:  "docker.io/library/alpine:3",
		Runtime: containers.RuntimeInfo{
			Name:    "io.containerd.runsc.v1",
			Options: anyOf("other.Options", "o"),
		},
		Spec:        specOf("new spec"),
		SnapshotKey: "c-2",
		Snapshotter: "native",
		Extensions:  map[string]typeurl.Any{"ext2": anyOf("example.com/Ext", "y")},
		SandboxID:   "pod-2",
	}
	// same is other with the runtime name and snapshotter of the original,
	// as a full replace needs; its runtime options and sandbox differ and
	// must not be taken.
	same := other
	same.Runtime.Name, same.Snapshotter = newContainer("c").Runtime.Name, "overlayfs"
	edit := func(fn func(*containers.Container)) containers.Container {
		c := newContainer("c")
		fn(&c)
		return c
	}
	for _, tc := range []struct {
		name    string
		upd     containers.Container
		paths   []string
		want    containers.Container // when wantErr is ""
		wantErr string
	}{
		{"labels.KEY sets", other, []string{"labels.new"},
			edit(func(c *containers.Container) { c.Labels["new"] = "1" }), ""},
		{"labels.KEY absent removes", other, []string{"labels.gone", "labels.app", "labels.new"},
			edit(func(c *containers.Container) { c.Labels = map[string]string{"app": "changed", "new": "1"} }), ""},
		{"labels.KEY empty removes", containers.Container{ID: "c", Labels: map[string]string{"app": ""}}, []string{"labels.app"},
			edit(func(c *containers.Container) { c.Labels = nil }), ""},
		{"labels", other, []string{"labels"},
			edit(func(c *containers.Container) { c.Labels = other.Labels }), ""},
		{"spec", other, []string{"spec"},
			edit(func(c *containers.Container) { c.Spec = other.Spec }), ""},
		{"image", other, []string{"image"},
			edit(func(c *containers.Container) { c.Image = other.Image }), ""},
		{"snapshotkey", other, []string{"snapshotkey"},
			edit(func(c *containers.Container) { c.SnapshotKey = "c-2" }), ""},
		{"extensions", other, []string{"extensions"},
			edit(func(c *containers.Container) { c.Extensions = other.Extensions }), ""},
		{"extensions.KEY", other, []string{"extensions.ext2", "extensions.ext"},
			edit(func(c *containers.Container) { c.Extensions = other.Extensions }), ""},
		{"several", other, []string{"image", "labels.new"},
			edit(func(c *containers.Container) { c.Image, c.Labels["new"] = other.Image, "1" }), ""},
		{"full replace", same, nil,
			edit(func(c *containers.Container) {
				c.Labels, c.Spec, c.Extensions, c.Image, c.SnapshotKey = same.Labels, same.Spec, same.Extensions, same.Image, same.SnapshotKey
			}), ""},

		{"runtime", other, []string{"runtime"}, containers.Container{}, `cannot update "runtime" field on container "c"`},
		{"runtime.name", other, []string{"runtime.name"}, containers.Container{}, `cannot update "runtime.name" field`},
		{"snapshotter", other, []string{"snapshotter"}, containers.Container{}, `cannot update "snapshotter" field`},
		{"sandbox", other, []string{"sandbox"}, containers.Container{}, `cannot update "sandbox" field`},
		{"id", other, []string{"id"}, containers.Container{}, `cannot update "id" field`},
		{"created_at", other, []string{"created_at"}, containers.Container{}, `cannot update "created_at" field`},
		{"full replace, other snapshotter", edit(func(c *containers.Container) { c.Snapshotter = "native" }), nil,
			containers.Container{}, "container.Snapshotter field is immutable"},
		{"full replace, other runtime", edit(func(c *containers.Container) { c.Runtime.Name = "io.containerd.runsc.v1" }), nil,
			containers.Container{}, "container.Runtime.Name field is immutable"},
		{"spec removed", containers.Container{ID: "c"}, []string{"spec"}, containers.Container{}, "spec must be set"},
		{"bad label", containers.Container{ID: "c", Labels: map[string]string{"k": strings.Repeat("v", 4096)}}, []string{"labels.k"},
			containers.Container{}, `label "k"`},
		{"full replace, no snapshotter", containers.Container{ID: "c", Runtime: newContainer("c").Runtime, Spec: specOf("{}")}, nil, containers.Container{}, "container.Snapshotter field is immutable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			cs := e.db.Containers()
			ctx := nsCtx("default")
			orig := mustCreateContainer(t, ctx, cs, newContainer("c"))
			e.events.take()
			time.Sleep(time.Millisecond) // so that UpdatedAt moves
			got, err := cs.Update(ctx, tc.upd, tc.paths...)
			stored, gerr := cs.Get(ctx, "c")
			if gerr != nil {
				t.Fatal(gerr)
			}
			if tc.wantErr != "" {
				wantErr(t, err, isInvalid, tc.wantErr)
				if d := containerDiff(newContainer("c"), stored); d != "" || !stored.UpdatedAt.Equal(orig.UpdatedAt) {
					t.Errorf("a failed update changed the record (-want +got):\n%s", d)
				}
				if evs := e.events.take(); len(evs) != 0 {
					t.Errorf("a failed update published %v", topics(evs))
				}
				return
			}
			if err != nil {
				t.Fatalf("Update(%q): %v", tc.paths, err)
			}
			if d := containerDiff(tc.want, got); d != "" {
				t.Errorf("Update returned (-want +got):\n%s", d)
			}
			if d := containerDiff(tc.want, stored); d != "" {
				t.Errorf("stored after update (-want +got):\n%s", d)
			}
			if !stored.CreatedAt.Equal(orig.CreatedAt) || !stored.UpdatedAt.After(orig.UpdatedAt) {
				t.Errorf("times: created %v (was %v), updated %v (was %v)", stored.CreatedAt, orig.CreatedAt, stored.UpdatedAt, orig.UpdatedAt)
			}
			wantEvents := []published{{Namespace: "default", Topic: "/containers/update", Event: &eventstypes.ContainerUpdate{
				ID: "c", Image: tc.want.Image, Labels: tc.want.Labels, SnapshotKey: tc.want.SnapshotKey,
			}}}
			if d := cmp.Diff(wantEvents, e.events.take(), protocmp.Transform(), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("events (-want +got):\n%s", d)
			}
		})
	}
}

func TestContainerUpdateNeedsID(t *testing.T) {
	e := newEnv(t)
	_, err := e.db.Containers().Update(nsCtx("default"), containers.Container{}, "labels")
	wantErr(t, err, isInvalid, "ID is required")
}

func TestContainerDelete(t *testing.T) {
	e := newEnv(t)
	cs := e.db.Containers()
	ctx := nsCtx("team")
	mustCreateContainer(t, ctx, cs, newContainer("web"))
	mutated := 0
	e.db.SetMutationCallback(func() { mutated++ })

	err := e.db.Namespaces().Delete(ctx, "team")
	wantErr(t, err, isPrecondition, `namespace "team" must be empty`, "containers (1)")

	e.events.take()
	if err := cs.Delete(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if mutated != 1 {
		t.Errorf("delete told the GC scheduler %d times, want 1", mutated)
	}
	want := []published{{Namespace: "team", Topic: "/containers/delete", Event: &eventstypes.ContainerDelete{ID: "web"}}}
	if d := cmp.Diff(want, e.events.take(), protocmp.Transform()); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
	_, err = cs.Get(ctx, "web")
	wantErr(t, err, isNotFound, `container "web"`)
	wantErr(t, cs.Delete(ctx, "web"), isNotFound, `container "web" in namespace "team"`)
	if err := e.db.Namespaces().Delete(ctx, "team"); err != nil {
		t.Errorf("delete the emptied namespace: %v", err)
	}
}

// TestGCContainerLabels: a container's gc.ref.content labels keep blobs
// until it is deleted.
func TestGCContainerLabels(t *testing.T) {
	e := newEnv(t)
	ctx := nsCtx("default")
	blob := commit(t, ctx, e.db.ContentStore(), "checkpoint", []byte("checkpoint"), nil)
	c := newContainer("web")
	c.Labels = map[string]string{gcRef + ".checkpoint": blob.String()}
	mustCreateContainer(t, ctx, e.db.Containers(), c)
	e.gc(t)
	if !e.onDisk(t, blob) {
		t.Fatal("a blob the container's label refers to was collected")
	}
	if err := e.db.Containers().Delete(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	e.gc(t)
	if e.onDisk(t, blob) {
		t.Error("the blob outlived the container that referred to it")
	}
}

// TestGCContainerSnapshot is the ctr flow: the rootfs is prepared over an
// image's chain under a short lease, the container is created, the lease
// ends. The container alone keeps its snapshot (and, through parents, the
// image's chain); once it is deleted, both go — the chain only when the
// image is gone too.
func TestGCContainerSnapshot(t *testing.T) {
	e := newSnapEnv(t)
	s := e.db.Snapshotter("overlayfs")
	ctx, other := nsCtx("default"), nsCtx("other")
	top := chain(t, ctx, s)
	pushUnpackedImage(t, ctx, e, "app:1", "overlayfs", top)
	// The same key in another namespace is a different snapshot.
	mustPrepare(t, leasedCtx(t, e, other, "other-lease"), s, "web-rootfs", "")

	lctx := leasedCtx(t, e, ctx, "create")
	mustPrepare(t, lctx, s, "web-rootfs", top)
	c := newContainer("web")
	c.SnapshotKey = "web-rootfs"
	mustCreateContainer(t, ctx, e.db.Containers(), c)
	for _, l := range []struct {
		ctx context.Context
		id  string
	}{{ctx, "create"}, {other, "other-lease"}} {
		if err := e.db.Leases().Delete(l.ctx, l.id, false); err != nil {
			t.Fatal(err)
		}
	}
	e.gc(t)
	want := []string{"chain-1", "chain-2", "chain-3", "web-rootfs"}
	if got := keys(t, ctx, s); !slices.Equal(got, want) {
		t.Fatalf("snapshots with the container = %q, want %q", got, want)
	}
	if got := keys(t, other, s); len(got) != 0 {
		t.Errorf("other namespace's unreferenced snapshots = %q, want none", got)
	}

	// Without the image, the container still keeps the chain under it.
	if err := e.db.Images().Delete(ctx, "app:1"); err != nil {
		t.Fatal(err)
	}
	e.gc(t)
	if got := keys(t, ctx, s); !slices.Equal(got, want) {
		t.Fatalf("snapshots after the image went = %q, want %q", got, want)
	}

	if err := e.db.Containers().Delete(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	e.gc(t)
	if got := keys(t, ctx, s); len(got) != 0 {
		t.Errorf("snapshots after the container went = %q, want none", got)
	}
	if got := e.backendKeys(t, "overlayfs"); len(got) != 0 {
		t.Errorf("backend snapshots = %q, want none", got)
	}
}

// TestGCContainerSnapshotImageStays: deleting a container removes only its
// own snapshot; the image's committed chain stays with the image.
func TestGCContainerSnapshotImageStays(t *testing.T) {
	e := newSnapEnv(t)
	s := e.db.Snapshotter("native")
	ctx := nsCtx("default")
	top := chain(t, ctx, s)
	pushUnpackedImage(t, ctx, e, "app:1", "native", top)
	mustPrepare(t, leasedCtx(t, e, ctx, "create"), s, "web-rootfs", top)
	c := newContainer("web")
	c.Snapshotter, c.SnapshotKey = "native", "web-rootfs"
	mustCreateContainer(t, ctx, e.db.Containers(), c)
	// A container naming a snapshot that does not exist does not upset a
	// collection.
	ghost := newContainer("ghost")
	ghost.SnapshotKey = "never-prepared"
	mustCreateContainer(t, ctx, e.db.Containers(), ghost)
	if err := e.db.Leases().Delete(ctx, "create", false); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Containers().Delete(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	e.gc(t)
	if got, want := keys(t, ctx, s), []string{"chain-1", "chain-2", "chain-3"}; !slices.Equal(got, want) {
		t.Errorf("snapshots = %q, want the image's chain %q", got, want)
	}
}

// leasedCtx creates lease id in the namespace of ctx and returns ctx
// under it.
func leasedCtx(t *testing.T, e *snapEnv, ctx context.Context, id string) context.Context {
	t.Helper()
	if _, err := e.db.Leases().Create(ctx, leases.Lease{ID: id}); err != nil {
		t.Fatal(err)
	}
	return leases.WithLease(ctx, id)
}
