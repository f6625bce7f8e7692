package metadata_test

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/content"
	"github.com/berth-dev/berth/leases"
	"github.com/opencontainers/go-digest"
)

func leaseIDs(ls []leases.Lease) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.ID)
	}
	slices.Sort(out)
	return out
}

func sortResources(rs []leases.Resource) []leases.Resource {
	slices.SortFunc(rs, func(a, b leases.Resource) int {
		return strings.Compare(a.Type+" "+a.ID, b.Type+" "+b.ID)
	})
	return rs
}

func TestLeaseCreate(t *testing.T) {
	e := newEnv(t)
	lm := e.db.Leases()
	ctx := nsCtx("default")
	exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	l, err := lm.Create(ctx, leases.Lease{ID: "pull-1", Labels: map[string]string{"containerd.io/gc.expire": exp}})
	if err != nil {
		t.Fatal(err)
	}
	if l.ID != "pull-1" || l.CreatedAt.IsZero() {
		t.Errorf("Create = %+v", l)
	}
	_, err = lm.Create(ctx, leases.Lease{ID: "pull-1"})
	wantErr(t, err, isAlreadyExists, `lease "pull-1"`, `namespace "default"`)
	// The same ID in another namespace is another lease.
	if _, err := lm.Create(nsCtx("other"), leases.Lease{ID: "pull-1"}); err != nil {
		t.Errorf("same ID in another namespace: %v", err)
	}

	for _, tc := range []struct {
		lease leases.Lease
		want  string
	}{
		{leases.Lease{}, "must not be empty"},
		{leases.Lease{ID: strings.Repeat("l", 32769)}, "maximum of 32768"},
		{leases.Lease{ID: "l", Labels: map[string]string{"containerd.io/gc.expire": "tomorrow"}}, `"tomorrow" is not an RFC 3339 time`},
		{leases.Lease{ID: "l", Labels: map[string]string{"containerd.io/gc.expire": "2030-01-01"}}, "RFC 3339"},
		{leases.Lease{ID: "l", Labels: map[string]string{"k": strings.Repeat("v", 4096)}}, "4096"},
	} {
		_, err := lm.Create(ctx, tc.lease)
		wantErr(t, err, isInvalid, tc.want)
	}
	_, err = lm.Create(nsCtx(""), leases.Lease{ID: "x"})
	wantErr(t, err, isPrecondition, "namespace")
}

// Lease IDs are not identifiers: containerd takes any non-empty one, and
// its clients generate "<nanoseconds>-<4 chars of URL-safe base64>".
func TestLeaseIDsAsContainerd(t *testing.T) {
	e := newEnv(t)
	lm := e.db.Leases()
	ctx := nsCtx("default")
	for _, id := range []string{"554940298-hm3_", "12-_a3b", "7-a--b", "99-AbC9", "-x", "has space", "a/b", strings.Repeat("l", 77)} {
		if _, err := lm.Create(ctx, leases.Lease{ID: id}); err != nil {
			t.Errorf("Create(%q): %v", id, err)
			continue
		}
		if got, _ := lm.List(ctx, fmt.Sprintf("id==%q", id)); len(got) != 1 {
			t.Errorf("List(id==%q) = %v", id, leaseIDs(got))
		}
		if err := lm.Delete(ctx, id, false); err != nil {
			t.Errorf("Delete(%q): %v", id, err)
		}
	}
}

func TestLeaseList(t *testing.T) {
	e := newEnv(t)
	lm := e.db.Leases()
	ctx := nsCtx("default")
	for _, l := range []leases.Lease{
		{ID: "a", Labels: map[string]string{"purpose": "pull"}},
		{ID: "b", Labels: map[string]string{"purpose": "build"}},
		{ID: "c"},
	} {
		if _, err := lm.Create(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := lm.Create(nsCtx("other"), leases.Lease{ID: "z"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		filters []string
		want    []string
	}{
		{nil, []string{"a", "b", "c"}},
		{[]string{"id==b"}, []string{"b"}},
		{[]string{"labels.purpose==pull"}, []string{"a"}},
		{[]string{"labels.purpose"}, []string{"a", "b"}},
		{[]string{"id==c", "labels.purpose==build"}, []string{"b", "c"}},
		{[]string{"id~=^[ab]$"}, []string{"a", "b"}},
		{[]string{"id==z"}, nil},
	} {
		got, err := lm.List(ctx, tc.filters...)
		if err != nil {
			t.Fatal(err)
		}
		if ids := leaseIDs(got); !reflect.DeepEqual(ids, tc.want) {
			t.Errorf("List(%q) = %v, want %v", tc.filters, ids, tc.want)
		}
	}
	got, _ := lm.List(ctx, "id==a")
	if len(got) != 1 || !reflect.DeepEqual(got[0].Labels, map[string]string{"purpose": "pull"}) || got[0].CreatedAt.IsZero() {
		t.Errorf("List(id==a) = %+v", got)
	}
}

func TestLeaseResources(t *testing.T) {
	e := newEnv(t)
	lm := e.db.Leases()
	ctx := nsCtx("default")
	if _, err := lm.Create(ctx, leases.Lease{ID: "l"}); err != nil {
		t.Fatal(err)
	}
	dgst := digest.FromString("blob")
	rs := []leases.Resource{
		{Type: "content", ID: dgst.String()},
		{Type: "ingests", ID: "upload-1"},
		{Type: "snapshots/overlayfs", ID: "sha256:layer-key"},
		{Type: "snapshots/native", ID: "other-key"},
	}
	for _, r := range rs {
		if err := lm.AddResource(ctx, "l", r); err != nil {
			t.Fatalf("AddResource(%+v): %v", r, err)
		}
	}
	// Adding twice is harmless.
	if err := lm.AddResource(ctx, "l", rs[0]); err != nil {
		t.Fatal(err)
	}
	got, err := lm.ListResources(ctx, "l")
	if err != nil {
		t.Fatal(err)
	}
	if want := sortResources(slices.Clone(rs)); !reflect.DeepEqual(sortResources(got), want) {
		t.Errorf("ListResources = %+v, want %+v", got, want)
	}

	if err := lm.DeleteResource(ctx, "l", rs[2]); err != nil {
		t.Fatal(err)
	}
	if err := lm.DeleteResource(ctx, "l", rs[1]); err != nil {
		t.Fatal(err)
	}
	got, _ = lm.ListResources(ctx, "l")
	if want := sortResources([]leases.Resource{rs[0], rs[3]}); !reflect.DeepEqual(sortResources(got), want) {
		t.Errorf("ListResources after deletes = %+v, want %+v", got, want)
	}

	for _, tc := range []struct {
		r    leases.Resource
		is   func(error) bool
		want string
	}{
		{leases.Resource{Type: "content", ID: "not-a-digest"}, isInvalid, "not a digest"},
		{leases.Resource{Type: "content"}, isInvalid, "id must not be empty"},
		{leases.Resource{Type: "snapshots/", ID: "k"}, isNotImplemented, `"snapshots/"`},
		{leases.Resource{Type: "containers", ID: "c"}, isNotImplemented, `"containers"`},
	} {
		wantErr(t, lm.AddResource(ctx, "l", tc.r), tc.is, tc.want)
	}
	wantErr(t, lm.AddResource(ctx, "ghost", rs[0]), isNotFound, `lease "ghost"`)
	wantErr(t, lm.DeleteResource(ctx, "ghost", rs[0]), isNotFound, `lease "ghost"`)
	_, err = lm.ListResources(ctx, "ghost")
	wantErr(t, err, isNotFound, `lease "ghost"`)
	_, err = lm.ListResources(nsCtx("other"), "l")
	wantErr(t, err, isNotFound, `namespace "other"`)
}

func TestLeaseDelete(t *testing.T) {
	e := newEnv(t)
	lm := e.db.Leases()
	ctx := nsCtx("default")
	if _, err := lm.Create(ctx, leases.Lease{ID: "l"}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, lm.Delete(nsCtx("other"), "l", false), isNotFound, `lease "l"`, `namespace "other"`)
	if err := lm.Delete(ctx, "l", false); err != nil {
		t.Fatal(err)
	}
	if got, _ := lm.List(ctx); len(got) != 0 {
		t.Errorf("leases after Delete: %v", leaseIDs(got))
	}
	wantErr(t, lm.Delete(ctx, "l", false), isNotFound)
}

// A writer under a lease records its ingest in the lease, and the commit
// moves the hold from the ingest to the blob.
func TestLeaseHoldsWriterObjects(t *testing.T) {
	e := newEnv(t)
	lm := e.db.Leases()
	cs := e.db.ContentStore()
	ctx := nsCtx("default")
	if _, err := lm.Create(ctx, leases.Lease{ID: "pull"}); err != nil {
		t.Fatal(err)
	}
	lctx := leases.WithLease(ctx, "pull")
	data := []byte("leased layer")
	w, err := cs.Writer(lctx, content.WithRef("layer-0"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	got, _ := lm.ListResources(ctx, "pull")
	if want := []leases.Resource{{Type: "ingests", ID: "layer-0"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("resources with the writer open = %+v, want %+v", got, want)
	}
	w.Write(data)
	if err := w.Commit(lctx, int64(len(data)), ""); err != nil {
		t.Fatal(err)
	}
	got, _ = lm.ListResources(ctx, "pull")
	want := []leases.Resource{{Type: "content", ID: digest.FromBytes(data).String()}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("resources after commit = %+v, want %+v", got, want)
	}

	// A blob shared from another namespace under a lease is held too.
	other := nsCtx("other")
	if _, err := lm.Create(other, leases.Lease{ID: "pull"}); err != nil {
		t.Fatal(err)
	}
	_, err = cs.Writer(leases.WithLease(other, "pull"), content.WithRef("x"), content.WithDescriptor(descOf(data)))
	wantErr(t, err, isAlreadyExists)
	if got, _ := lm.ListResources(other, "pull"); !reflect.DeepEqual(got, want) {
		t.Errorf("resources of the sharing lease = %+v, want %+v", got, want)
	}

	// Abort under the lease drops the ingest from it.
	w2, err := cs.Writer(lctx, content.WithRef("layer-1"))
	if err != nil {
		t.Fatal(err)
	}
	w2.Close()
	if err := cs.Abort(lctx, "layer-1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := lm.ListResources(ctx, "pull"); !reflect.DeepEqual(got, want) {
		t.Errorf("resources after Abort = %+v, want %+v", got, want)
	}

	// A lease that does not exist is an error, and leaves nothing behind.
	_, err = cs.Writer(leases.WithLease(ctx, "ghost"), content.WithRef("r"))
	wantErr(t, err, isNotFound, `lease "ghost"`)
	if st, _ := cs.ListStatuses(ctx); len(st) != 0 {
		t.Errorf("ingests after a writer on a missing lease: %+v", st)
	}
}

// A blob the namespace references already is added to the writer's lease
// all the same, with or without a descriptor: otherwise the client that
// holds the other reference could drop it, and a collection take the blob
// from under the lease.
func TestLeaseHoldsExistingReference(t *testing.T) {
	for _, withDesc := range []bool{true, false} {
		t.Run(map[bool]string{true: "descriptor", false: "commit"}[withDesc], func(t *testing.T) {
			e := newEnv(t)
			lm := e.db.Leases()
			cs := e.db.ContentStore()
			ctx := nsCtx("default")
			data := []byte("layer pulled twice")
			dgst := commit(t, ctx, cs, "first", data, nil)
			if _, err := lm.Create(ctx, leases.Lease{ID: "second-pull"}); err != nil {
				t.Fatal(err)
			}
			lctx := leases.WithLease(ctx, "second-pull")
			if withDesc {
				_, err := cs.Writer(lctx, content.WithRef("second"), content.WithDescriptor(descOf(data)))
				wantErr(t, err, isAlreadyExists)
			} else {
				w, err := cs.Writer(lctx, content.WithRef("second"))
				if err != nil {
					t.Fatal(err)
				}
				w.Write(data)
				wantErr(t, w.Commit(lctx, 0, ""), isAlreadyExists)
				w.Close()
			}
			want := []leases.Resource{{Type: "content", ID: dgst.String()}}
			if got, _ := lm.ListResources(ctx, "second-pull"); !reflect.DeepEqual(got, want) {
				t.Errorf("lease resources = %+v, want %+v", got, want)
			}
			e.gc(t)
			if _, err := readAll(ctx, cs, dgst); err != nil {
				t.Errorf("leased blob collected: %v", err)
			}
		})
	}
}
