package metadata_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-dev/berth/content"
	"github.com/berth-dev/berth/images"
	"github.com/berth-dev/berth/leases"
	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestNamespaceCreate(t *testing.T) {
	e := newEnv(t)
	ns := e.db.Namespaces()
	ctx := context.Background()

	if err := ns.Create(ctx, "team-a", map[string]string{"owner": "alice"}); err != nil {
		t.Fatal(err)
	}
	got, err := ns.Labels(ctx, "team-a")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"owner": "alice"}; !reflect.DeepEqual(got, want) {
		t.Errorf("labels = %v, want %v", got, want)
	}
	wantErr(t, ns.Create(ctx, "team-a", nil), isAlreadyExists, `namespace "team-a"`)

	_, err = ns.Labels(ctx, "nope")
	wantErr(t, err, isNotFound, `namespace "nope"`)
}

func TestNamespaceCreateInvalid(t *testing.T) {
	e := newEnv(t)
	ns := e.db.Namespaces()
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		want string // part of the error naming the rule
	}{
		{"", "must not be empty"},
		{"-lead", "must match"},
		{"trail_", "must match"},
		{"a..b", "must match"},
		{"has space", "must match"},
		{"UPPER/slash", "must match"},
		{strings.Repeat("a", 77), "longer than the maximum of 76"},
	} {
		wantErr(t, ns.Create(ctx, tc.name, nil), isInvalid, tc.want)
	}

	big := strings.Repeat("v", 4096)
	wantErr(t, ns.Create(ctx, "ok", map[string]string{"k": big}), isInvalid, `label "k"`, "4096")
	if list, _ := ns.List(ctx); len(list) != 0 {
		t.Errorf("namespaces after failed creates = %v, want none", list)
	}
}

func TestNamespaceUpdateLabels(t *testing.T) {
	e := newEnv(t)
	ns := e.db.Namespaces()
	ctx := context.Background()
	if err := ns.Create(ctx, "n", map[string]string{"a": "1", "b": "2"}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		labels map[string]string
		paths  []string
		want   map[string]string
	}{
		// labels.KEY sets one key and leaves the rest.
		{map[string]string{"c": "3", "a": "ignored"}, []string{"labels.c"}, map[string]string{"a": "1", "b": "2", "c": "3"}},
		// labels.KEY absent from the update deletes the key.
		{nil, []string{"labels.a"}, map[string]string{"b": "2", "c": "3"}},
		// an empty value deletes it too.
		{map[string]string{"b": ""}, []string{"labels.b"}, map[string]string{"c": "3"}},
		// "labels" replaces them all.
		{map[string]string{"x": "y"}, []string{"labels"}, map[string]string{"x": "y"}},
		// no field path replaces them all as well.
		{map[string]string{"z": "1"}, nil, map[string]string{"z": "1"}},
	}
	for i, s := range steps {
		got, err := ns.Update(ctx, "n", s.labels, s.paths...)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, s.want) {
			t.Errorf("step %d: Update returned %v, want %v", i, got, s.want)
		}
		stored, _ := ns.Labels(ctx, "n")
		if !reflect.DeepEqual(stored, s.want) {
			t.Errorf("step %d: stored labels %v, want %v", i, stored, s.want)
		}
	}

	_, err := ns.Update(ctx, "n", nil, "name")
	wantErr(t, err, isInvalid, `"name"`, "only labels")
	_, err = ns.Update(ctx, "missing", nil)
	wantErr(t, err, isNotFound, `namespace "missing"`)
	_, err = ns.Update(ctx, "n", map[string]string{"k": strings.Repeat("v", 4096)}, "labels.k")
	wantErr(t, err, isInvalid, "4096")
}

func TestNamespaceListSorted(t *testing.T) {
	e := newEnv(t)
	ns := e.db.Namespaces()
	ctx := context.Background()
	for _, n := range []string{"zeta", "alpha", "k8s.io", "default"} {
		if err := ns.Create(ctx, n, nil); err != nil {
			t.Fatal(err)
		}
	}
	// A namespace also comes into being when an object is made in it.
	if _, err := e.db.Leases().Create(nsCtx("implicit"), leases.Lease{ID: "l"}); err != nil {
		t.Fatal(err)
	}
	got, err := ns.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"alpha", "default", "implicit", "k8s.io", "zeta"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
}

func TestNamespaceDeleteNonEmpty(t *testing.T) {
	e := newEnv(t)
	ns := e.db.Namespaces()
	ctx := nsCtx("busy")
	if err := ns.Create(ctx, "busy", nil); err != nil {
		t.Fatal(err)
	}
	cs := e.db.ContentStore()
	dgst := commit(t, ctx, cs, "blob-1", []byte("one"), nil)
	commit(t, ctx, cs, "blob-2", []byte("two"), nil)
	if _, err := e.db.Images().Create(ctx, images.Image{Name: "img", Target: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: dgst, Size: 3}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Leases().Create(ctx, leases.Lease{ID: "lease"}); err != nil {
		t.Fatal(err)
	}
	w, err := cs.Writer(ctx, content.WithRef("pending"))
	if err != nil {
		t.Fatal(err)
	}
	w.Close()

	err = ns.Delete(context.Background(), "busy")
	wantErr(t, err, isPrecondition, `namespace "busy"`, "content blobs (2)", "content ingests (1)", "images (1)", "leases (1)")

	// Empty it, one kind at a time, and the message shrinks with it.
	if err := e.db.Images().Delete(ctx, "img"); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Leases().Delete(ctx, "lease", false); err != nil {
		t.Fatal(err)
	}
	if err := cs.Abort(ctx, "pending"); err != nil {
		t.Fatal(err)
	}
	err = ns.Delete(context.Background(), "busy")
	wantErr(t, err, isPrecondition, "content blobs (2)")
	if strings.Contains(err.Error(), "images") || strings.Contains(err.Error(), "leases") || strings.Contains(err.Error(), "ingests") {
		t.Errorf("error %q names objects already removed", err)
	}
	for _, d := range []digest.Digest{dgst, digest.FromString("two")} {
		if err := cs.Delete(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := ns.Delete(context.Background(), "busy"); err != nil {
		t.Fatalf("Delete of the emptied namespace: %v", err)
	}
	wantErr(t, ns.Delete(context.Background(), "busy"), isNotFound, `namespace "busy"`)
}

func TestNamespaceEvents(t *testing.T) {
	e := newEnv(t)
	ns := e.db.Namespaces()
	ctx := context.Background()
	if err := ns.Create(ctx, "n", map[string]string{"a": "1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.Update(ctx, "n", map[string]string{"b": "2"}, "labels.b"); err != nil {
		t.Fatal(err)
	}
	if err := ns.Delete(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	// Failures publish nothing.
	_ = ns.Create(ctx, "bad name", nil)
	_ = ns.Delete(ctx, "n")

	want := []published{
		{"n", "/namespaces/create", &eventstypes.NamespaceCreate{Name: "n", Labels: map[string]string{"a": "1"}}},
		{"n", "/namespaces/update", &eventstypes.NamespaceUpdate{Name: "n", Labels: map[string]string{"a": "1", "b": "2"}}},
		{"n", "/namespaces/delete", &eventstypes.NamespaceDelete{Name: "n"}},
	}
	if got := e.events.take(); !reflect.DeepEqual(got, want) {
		t.Errorf("events = %+v, want %+v", got, want)
	}
}
