package metadata_test

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/content"
	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// walk lists, sorted, the digests cs.Walk reports in ctx's namespace.
func walk(t *testing.T, cs content.Manager, ctx context.Context, filters ...string) []digest.Digest {
	t.Helper()
	var out []digest.Digest
	if err := cs.Walk(ctx, func(info content.Info) error {
		out = append(out, info.Digest)
		return nil
	}, filters...); err != nil {
		t.Fatalf("Walk(%q): %v", filters, err)
	}
	slices.Sort(out)
	return out
}

func TestContentNamespaceIsolation(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	a, b := nsCtx("a"), nsCtx("b")
	data := []byte("hello, namespaces")
	dgst := commit(t, a, cs, "ref", data, map[string]string{"k": "v"})

	info, err := cs.Info(a, dgst)
	if err != nil {
		t.Fatal(err)
	}
	if info.Digest != dgst || info.Size != int64(len(data)) || !reflect.DeepEqual(info.Labels, map[string]string{"k": "v"}) {
		t.Errorf("Info in a = %+v", info)
	}
	if got, err := readAll(a, cs, dgst); err != nil || string(got) != string(data) {
		t.Errorf("read in a = %q, %v; want %q", got, err, data)
	}

	// b sees nothing of it, and the errors say where it is.
	_, err = cs.Info(b, dgst)
	wantErr(t, err, isNotFound, `namespace "b"`, `exists in namespace "a"`)
	_, err = cs.ReaderAt(b, ocispec.Descriptor{Digest: dgst})
	wantErr(t, err, isNotFound, dgst.String())
	if got := walk(t, cs, b); len(got) != 0 {
		t.Errorf("Walk in b = %v, want nothing", got)
	}
	wantErr(t, cs.Delete(b, dgst), isNotFound, `namespace "b"`)
	_, err = cs.Update(b, content.Info{Digest: dgst, Labels: map[string]string{"x": "y"}}, "labels.x")
	wantErr(t, err, isNotFound, `namespace "b"`)
}

func TestContentSharedWithDescriptor(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	a, b := nsCtx("a"), nsCtx("b")
	data := []byte("shared layer")
	dgst := commit(t, a, cs, "ref-a", data, nil)
	e.events.take()

	desc := ocispec.Descriptor{Digest: dgst, Size: int64(len(data))}
	_, err := cs.Writer(b, content.WithRef("ref-b"), content.WithDescriptor(desc))
	wantErr(t, err, isAlreadyExists, dgst.String())

	if info, err := cs.Info(b, dgst); err != nil || info.Size != int64(len(data)) {
		t.Errorf("Info in b after AlreadyExists = %+v, %v", info, err)
	}
	if got, err := readAll(b, cs, dgst); err != nil || string(got) != string(data) {
		t.Errorf("read in b = %q, %v", got, err)
	}
	if got := e.blobsOnDisk(t); !reflect.DeepEqual(got, []digest.Digest{dgst}) {
		t.Errorf("blobs on disk = %v, want only %s", got, dgst)
	}
	if st, err := cs.ListStatuses(b); err != nil || len(st) != 0 {
		t.Errorf("ingests in b = %v, %v; want none", st, err)
	}
	want := []published{{"b", "/content/create", &eventstypes.ContentCreate{Digest: dgst.String(), Size: int64(len(data))}}}
	if got := e.events.take(); !reflect.DeepEqual(got, want) {
		t.Errorf("events = %+v, want %+v", got, want)
	}

	// Asking again in b: still AlreadyExists, and no second event.
	_, err = cs.Writer(b, content.WithRef("ref-b"), content.WithDescriptor(desc))
	wantErr(t, err, isAlreadyExists)
	if got := e.events.take(); len(got) != 0 {
		t.Errorf("events on a second share = %+v", got)
	}
}

func TestContentSharedWithoutDescriptor(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	a, b := nsCtx("a"), nsCtx("b")
	data := []byte("written twice")
	dgst := commit(t, a, cs, "ref-a", data, nil)
	// Without a descriptor the bytes are sent again; the commit succeeds
	// and the backend keeps one copy.
	if got := commit(t, b, cs, "ref-b", data, map[string]string{"in": "b"}); got != dgst {
		t.Fatalf("digest %s, want %s", got, dgst)
	}
	if got := e.blobsOnDisk(t); !reflect.DeepEqual(got, []digest.Digest{dgst}) {
		t.Errorf("blobs on disk = %v, want only %s", got, dgst)
	}
	if e.ingestsOnDisk(t) != 0 {
		t.Errorf("%d ingests left on disk after the commits", e.ingestsOnDisk(t))
	}
	info, err := cs.Info(b, dgst)
	if err != nil || !reflect.DeepEqual(info.Labels, map[string]string{"in": "b"}) {
		t.Errorf("Info in b = %+v, %v", info, err)
	}
	// Labels are per namespace.
	if info, _ := cs.Info(a, dgst); info.Labels != nil {
		t.Errorf("labels in a = %v, want none", info.Labels)
	}

	// Committing the same bytes again in b: AlreadyExists, the ingest gone.
	w, err := cs.Writer(b, content.WithRef("again"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	wantErr(t, w.Commit(b, int64(len(data)), dgst), isAlreadyExists, dgst.String())
	if st, _ := cs.ListStatuses(b); len(st) != 0 {
		t.Errorf("ingests in b after AlreadyExists: %+v", st)
	}
}

func TestContentUpdateLabels(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	ctx := nsCtx("a")
	dgst := commit(t, ctx, cs, "ref", []byte("x"), map[string]string{"a": "1", "b": "2"})
	before, _ := cs.Info(ctx, dgst)

	got, err := cs.Update(ctx, content.Info{Digest: dgst, Labels: map[string]string{"c": "3", "a": "no"}}, "labels.c", "labels.b")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"a": "1", "c": "3"}; !reflect.DeepEqual(got.Labels, want) {
		t.Errorf("labels = %v, want %v", got.Labels, want)
	}
	if got.Size != 1 || !got.CreatedAt.Equal(before.CreatedAt) || !got.UpdatedAt.After(before.UpdatedAt) {
		t.Errorf("Update = %+v; before %+v", got, before)
	}
	if stored, _ := cs.Info(ctx, dgst); !reflect.DeepEqual(stored.Labels, got.Labels) || !stored.UpdatedAt.Equal(got.UpdatedAt) {
		t.Errorf("stored %+v, want %+v", stored, got)
	}
	got, err = cs.Update(ctx, content.Info{Digest: dgst, Labels: map[string]string{"z": "9"}})
	if err != nil || !reflect.DeepEqual(got.Labels, map[string]string{"z": "9"}) {
		t.Errorf("Update without paths = %v, %v; want labels replaced", got.Labels, err)
	}
	_, err = cs.Update(ctx, content.Info{Digest: dgst, Size: 5}, "size")
	wantErr(t, err, isInvalid, `"size"`)
	_, err = cs.Update(ctx, content.Info{Digest: dgst, Labels: map[string]string{"k": strings.Repeat("v", 5000)}}, "labels.k")
	wantErr(t, err, isInvalid, "4096")
}

func TestContentWalkFilters(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	ctx := nsCtx("a")
	d1 := commit(t, ctx, cs, "1", []byte("one"), map[string]string{"x": "a", "containerd.io/gc.root": "yes"})
	d2 := commit(t, ctx, cs, "2", []byte("two!"), map[string]string{"x": "b"})
	d3 := commit(t, ctx, cs, "3", []byte("three"), nil)
	commit(t, nsCtx("other"), cs, "4", []byte("four"), map[string]string{"x": "a"})
	all := []digest.Digest{d1, d2, d3}
	slices.Sort(all)
	for _, tc := range []struct {
		filters []string
		want    []digest.Digest
	}{
		{nil, all},
		{[]string{"digest==" + d2.String()}, []digest.Digest{d2}},
		{[]string{"labels.x==a"}, []digest.Digest{d1}},
		{[]string{"labels.x"}, sorted(d1, d2)},
		{[]string{`labels."containerd.io/gc.root"`}, []digest.Digest{d1}},
		{[]string{"size==5"}, []digest.Digest{d3}},
		{[]string{"size==3", "size==4"}, sorted(d1, d2)},
		{[]string{"size==4,labels.x==a"}, nil},
		{[]string{"labels.x!=a"}, sorted(d2, d3)},
	} {
		if got := walk(t, cs, ctx, tc.filters...); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Walk(%q) = %v, want %v", tc.filters, got, tc.want)
		}
	}
	err := cs.Walk(ctx, func(content.Info) error { return nil }, "labels.x==")
	wantErr(t, err, isInvalid)
}

func sorted(ds ...digest.Digest) []digest.Digest {
	slices.Sort(ds)
	return ds
}

func TestContentIngestsPerNamespace(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	a, b := nsCtx("a"), nsCtx("b")
	data := []byte("0123456789")
	desc := ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}

	// The same ref in two namespaces is two ingests.
	wa, err := cs.Writer(a, content.WithRef("upload"), content.WithDescriptor(desc))
	if err != nil {
		t.Fatal(err)
	}
	wa.Write(data[:4])
	wb, err := cs.Writer(b, content.WithRef("upload"))
	if err != nil {
		t.Fatalf("same ref in another namespace: %v", err)
	}
	wb.Write(data[:7])
	if st, err := wa.Status(); err != nil || st.Ref != "upload" || st.Offset != 4 {
		t.Errorf("writer Status = %+v, %v; want ref upload at 4", st, err)
	}
	// A second writer on an open ref is refused.
	_, err = cs.Writer(a, content.WithRef("upload"))
	wantErr(t, err, isUnavailable)

	st, err := cs.Status(a, "upload")
	if err != nil {
		t.Fatal(err)
	}
	if st.Ref != "upload" || st.Offset != 4 || st.Total != desc.Size || st.Expected != desc.Digest {
		t.Errorf("Status in a = %+v", st)
	}
	if st, _ := cs.Status(b, "upload"); st.Offset != 7 || st.Expected != "" {
		t.Errorf("Status in b = %+v", st)
	}
	_, err = cs.Status(nsCtx("c"), "upload")
	wantErr(t, err, isNotFound, `ingest "upload"`, `namespace "c"`)

	if _, err := cs.Writer(a, content.WithRef("other")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		filters []string
		want    []string
	}{
		{nil, []string{"other", "upload"}},
		{[]string{"ref==upload"}, []string{"upload"}},
		{[]string{"ref~=^oth"}, []string{"other"}},
		{[]string{"expected==" + desc.Digest.String()}, []string{"upload"}},
	} {
		list, err := cs.ListStatuses(a, tc.filters...)
		if err != nil {
			t.Fatal(err)
		}
		var refs []string
		for _, s := range list {
			refs = append(refs, s.Ref)
		}
		slices.Sort(refs)
		if !reflect.DeepEqual(refs, tc.want) {
			t.Errorf("ListStatuses(a, %q) = %v, want %v", tc.filters, refs, tc.want)
		}
	}
	if list, _ := cs.ListStatuses(b); len(list) != 1 || list[0].Ref != "upload" || list[0].Offset != 7 {
		t.Errorf("ListStatuses(b) = %+v", list)
	}

	// Abort in b leaves a's ingest alone.
	wb.Close()
	if err := cs.Abort(b, "upload"); err != nil {
		t.Fatal(err)
	}
	_, err = cs.Status(b, "upload")
	wantErr(t, err, isNotFound)
	wantErr(t, cs.Abort(b, "upload"), isNotFound, `ingest "upload"`)
	if st, err := cs.Status(a, "upload"); err != nil || st.Offset != 4 {
		t.Errorf("a's ingest after b's abort = %+v, %v", st, err)
	}

	// Finish a's upload.
	wa.Write(data[4:])
	if err := wa.Commit(a, desc.Size, desc.Digest); err != nil {
		t.Fatal(err)
	}
	_, err = cs.Status(a, "upload")
	wantErr(t, err, isNotFound)
}

// Aborting an ingest whose writer is still open fails, and leaves the
// ingest as it was: visible, resumable and committable.
func TestContentAbortOpenWriter(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	ctx := nsCtx("a")
	w, err := cs.Writer(ctx, content.WithRef("busy"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("abc"))
	wantErr(t, cs.Abort(ctx, "busy"), isUnavailable, `"busy"`)
	if st, err := cs.Status(ctx, "busy"); err != nil || st.Offset != 3 {
		t.Errorf("Status after a refused Abort = %+v, %v; want the ingest at offset 3", st, err)
	}
	w.Close()
	if err := cs.Abort(ctx, "busy"); err != nil {
		t.Fatalf("Abort after Close: %v", err)
	}
	if n := e.ingestsOnDisk(t); n != 0 {
		t.Errorf("%d ingests on disk after Abort", n)
	}
}

func TestContentResume(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	ctx := nsCtx("a")
	data := []byte("resumable upload of some bytes")
	desc := ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}

	w, err := cs.Writer(ctx, content.WithRef("r"), content.WithDescriptor(desc))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data[:10])
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := cs.Status(ctx, "r")
	if err != nil || st.Offset != 10 {
		t.Fatalf("Status after Close = %+v, %v; want offset 10", st, err)
	}

	w, err = cs.Writer(ctx, content.WithRef("r"), content.WithDescriptor(desc))
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := w.Status(); st.Offset != 10 || st.Ref != "r" {
		t.Errorf("resumed writer Status = %+v; want ref r at 10", st)
	}
	w.Write(data[10:])
	if err := w.Commit(ctx, desc.Size, desc.Digest); err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(ctx, cs, desc.Digest); err != nil || string(got) != string(data) {
		t.Errorf("read = %q, %v; want %q", got, err, data)
	}
}

func TestContentWriterErrors(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	ctx := nsCtx("a")
	_, err := cs.Writer(ctx)
	wantErr(t, err, isInvalid, "ref")
	_, err = cs.Writer(nsCtx(""), content.WithRef("r"))
	wantErr(t, err, isPrecondition, "namespace")

	// A commit that fails verification keeps the ingest.
	w, err := cs.Writer(ctx, content.WithRef("r"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write([]byte("abc"))
	wantErr(t, w.Commit(ctx, 3, digest.FromString("xyz")), isPrecondition)
	wantErr(t, w.Commit(ctx, 3, digest.FromString("abc"), content.WithLabels(map[string]string{"": "v"})), isInvalid, "label key")
	if st, err := cs.Status(ctx, "r"); err != nil || st.Offset != 3 {
		t.Errorf("Status after failed commits = %+v, %v", st, err)
	}
	if len(e.blobsOnDisk(t)) != 0 {
		t.Errorf("blobs on disk after failed commits: %v", e.blobsOnDisk(t))
	}
}

// A descriptor naming a stored blob with another size is refused, and
// the blob is not shared.
func TestContentWriterSizeMismatch(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	dgst := commit(t, nsCtx("a"), cs, "a", []byte("abc"), nil)
	b := nsCtx("b")
	_, err := cs.Writer(b, content.WithRef("r"), content.WithDescriptor(ocispec.Descriptor{Digest: dgst, Size: 99}))
	wantErr(t, err, isPrecondition, dgst.String(), "size 3", "99")
	if _, err := cs.Info(b, dgst); err == nil {
		t.Errorf("blob shared into b despite a size mismatch")
	}
	if st, _ := cs.ListStatuses(b); len(st) != 0 {
		t.Errorf("ingests in b after a refused Writer: %+v", st)
	}
}

// A Writer the backend refuses leaves no ingest record behind: the
// namespace stays deletable.
func TestContentWriterRefusedLeavesNoRecord(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	ctx := nsCtx("b")
	if err := e.db.Namespaces().Create(ctx, "b", nil); err != nil {
		t.Fatal(err)
	}
	_, err := cs.Writer(ctx, content.WithRef("r"), content.WithDescriptor(ocispec.Descriptor{Digest: "sha256:bad"}))
	wantErr(t, err, isInvalid, "sha256:bad")
	if err := e.db.Namespaces().Delete(ctx, "b"); err != nil {
		t.Errorf("namespace b not empty after a refused Writer: %v", err)
	}
}

func TestContentDelete(t *testing.T) {
	e := newEnv(t)
	cs := e.db.ContentStore()
	a, b := nsCtx("a"), nsCtx("b")
	data := []byte("deleted in a only")
	dgst := commit(t, a, cs, "r", data, nil)
	commit(t, b, cs, "r", data, map[string]string{"containerd.io/gc.root": "keep"})
	e.events.take()
	if err := cs.Delete(a, dgst); err != nil {
		t.Fatal(err)
	}
	_, err := cs.Info(a, dgst)
	wantErr(t, err, isNotFound, `exists in namespace "b"`)
	e.gc(t)
	if got, err := readAll(b, cs, dgst); err != nil || string(got) != string(data) {
		t.Errorf("b's copy after a's delete and a collection: %q, %v", got, err)
	}
	want := []published{{"a", "/content/delete", &eventstypes.ContentDelete{Digest: dgst.String()}}}
	if got := e.events.take(); !reflect.DeepEqual(got, want) {
		t.Errorf("events = %+v, want %+v", got, want)
	}
	// The backend keeps no labels.
	_, err = e.backend.Update(a, content.Info{Digest: dgst})
	wantErr(t, err, isNotImplemented)
}
