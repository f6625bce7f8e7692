package local

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestAbort(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	wantErr(t, "Abort unknown", s.Abort(ctx, "nope"), errdefs.IsNotFound, `ingest ref "nope": not found`)

	w := openWriter(t, s, "ref", ocispec.Descriptor{})
	write(t, w, "partial")
	wantErr(t, "Abort while writing", s.Abort(ctx, "ref"), errdefs.IsUnavailable, `ref "ref" locked`)
	w.Close()

	if err := s.Abort(ctx, "ref"); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	_, err := s.Status(ctx, "ref")
	wantErr(t, "Status after Abort", err, errdefs.IsNotFound, "not found")
	if got := ingestEntries(t, s); len(got) != 0 {
		t.Errorf("ingest/ after Abort = %v, want empty", got)
	}
	// A new ingest on the ref starts from zero.
	w = openWriter(t, s, "ref", ocispec.Descriptor{})
	defer w.Close()
	if st, _ := w.Status(); st.Offset != 0 {
		t.Errorf("offset after Abort = %d, want 0", st.Offset)
	}
}

func TestListStatusesAndWalkIngests(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	for _, ref := range []string{"pull-a", "pull-b", "push/c"} {
		w := openWriter(t, s, ref, ocispec.Descriptor{})
		write(t, w, ref)
		w.Close()
	}
	open := openWriter(t, s, "open", ocispec.Descriptor{})
	defer open.Close()
	write(t, open, "xy")

	for _, tc := range []struct {
		filters []string
		want    []string
	}{
		{nil, []string{"open", "pull-a", "pull-b", "push/c"}},
		{[]string{""}, []string{"open", "pull-a", "pull-b", "push/c"}},
		{[]string{"ref==pull-a"}, []string{"pull-a"}},
		{[]string{`ref=="push/c"`, "ref==open"}, []string{"open", "push/c"}},
		{[]string{"ref~=^pull-"}, []string{"pull-a", "pull-b"}},
		{[]string{"ref==none"}, nil},
	} {
		sts, err := s.ListStatuses(ctx, tc.filters...)
		if err != nil {
			t.Fatalf("ListStatuses(%q): %v", tc.filters, err)
		}
		var got []string
		for _, st := range sts {
			got = append(got, st.Ref)
			if want := int64(len(st.Ref)); st.Ref != "open" && st.Offset != want {
				t.Errorf("ListStatuses: %q offset %d, want %d", st.Ref, st.Offset, want)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("ListStatuses(%q) = %q, want %q", tc.filters, got, tc.want)
		}
	}
	if st, err := s.Status(ctx, "open"); err != nil || st.Offset != 2 {
		t.Errorf("Status of open ingest = %+v, %v; want offset 2", st, err)
	}

	_, err := s.ListStatuses(ctx, "labels.a==b")
	wantErr(t, "ListStatuses bad filter", err, errdefs.IsInvalidArgument, `"labels.a==b"`)
	_, err = s.ListStatuses(ctx, "ref~=(")
	wantErr(t, "ListStatuses bad regexp", err, errdefs.IsInvalidArgument, "ref~=(")

	var refs []string
	if err := s.WalkIngests(func(ref string) error { refs = append(refs, ref); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(refs)
	if want := []string{"open", "pull-a", "pull-b", "push/c"}; !slices.Equal(refs, want) {
		t.Errorf("WalkIngests = %q, want %q", refs, want)
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, seed := range []string{"", "ref==a", `ref=="a b"`, "ref~=^a.*", "ref~=(", `ref=="`, "size>1"} {
		f.Add(seed, "ref")
	}
	f.Fuzz(func(t *testing.T, filter, ref string) {
		match, err := parseFilter(filter)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("parseFilter(%q) error %v is not InvalidArgument", filter, err)
			}
			return
		}
		got := match(ref)
		if v, ok := strings.CutPrefix(filter, "ref=="); ok && !strings.Contains(v, `"`) {
			if want := ref == strings.TrimSpace(v); got != want {
				t.Fatalf("parseFilter(%q)(%q) = %v, want %v", filter, ref, got, want)
			}
		}
	})
}
