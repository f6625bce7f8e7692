package main

import (
	"bytes"
	"github.com/berth-dev/berth/images"
	"reflect"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestChainIDs(t *testing.T) {
	a, b, c := digest.FromString("a"), digest.FromString("b"), digest.FromString("c")
	ab := digest.FromString(a.String() + " " + b.String())
	want := []digest.Digest{a, ab, digest.FromString(ab.String() + " " + c.String())}
	if got := images.ChainIDs([]digest.Digest{a, b, c}); !reflect.DeepEqual(got, want) {
		t.Errorf("chainIDs = %v, want %v", got, want)
	}
	if got := images.ChainIDs(nil); len(got) != 0 {
		t.Errorf("images.ChainIDs(nil) = %v", got)
	}
}

func TestRefName(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, tc := range []struct{ ref, base, want string }{
		{"", "", ""},
		{"latest", "", "import-2026-03-04:latest"},
		{"1.0", "example.com/app", "example.com/app:1.0"},
		{"example.com/app:1", "", "example.com/app:1"},
		{"example.com/app:1", "example.com/app", "example.com/app:1"},
		{"example.com/app/sub:1", "example.com/app", "example.com/app/sub:1"},
		{"example.com/application:1", "example.com/app", ""}, // not merely a longer name
		{"other.com/app:1", "example.com/app", ""},
	} {
		if got := refName(tc.ref, tc.base, now); got != tc.want {
			t.Errorf("refName(%q, %q) = %q, want %q", tc.ref, tc.base, got, tc.want)
		}
	}
}

func TestImportNames(t *testing.T) {
	desc := func(d string, ann map[string]string) ocispec.Descriptor {
		return ocispec.Descriptor{Digest: digest.FromString(d), Annotations: ann}
	}
	root := desc("root", nil)
	idx := ocispec.Index{Manifests: []ocispec.Descriptor{
		desc("a", map[string]string{annotationImageName: "example.com/a:1", annotationRefName: "1"}),
		desc("b", map[string]string{annotationRefName: "2"}),
		desc("c", nil), // nameless: content only
		desc("d", map[string]string{annotationImageName: "example.com/a:1"}),
	}}
	got := importNames(root, idx, importOptions{indexName: "all", baseName: "base"}, time.Now())
	want := []importRecord{
		{name: "all", target: root},
		{name: "example.com/a:1", target: idx.Manifests[3]}, // the last one wins
		{name: "base:2", target: idx.Manifests[1]},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("importNames = %+v, want %+v", got, want)
	}
}

func TestRefObject(t *testing.T) {
	for name, want := range map[string]string{
		"example.com/app:1":                    "1",
		"localhost:5000/app:2":                 "2",
		"docker.io/library/busybox@sha256:abc": "@sha256:abc",
		"app:3":                                "3",
		"example.com/app":                      "",
	} {
		if got := refObject(name); got != want {
			t.Errorf("refObject(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestArchiveResolveFollowsLinks(t *testing.T) {
	blob := archiveBlob{desc: ocispec.Descriptor{Digest: digest.FromString("x")}}
	arc := &importArchive{
		blobs: map[string]archiveBlob{"shared/layer.tar": blob},
		links: map[string]string{"a/layer.tar": "b/layer.tar", "b/layer.tar": "shared/layer.tar", "loop": "loop"},
	}
	if got, err := arc.resolve("./a/layer.tar"); err != nil || got.desc.Digest != blob.desc.Digest {
		t.Errorf("resolve through two links = %+v, %v", got, err)
	}
	for _, name := range []string{"loop", "missing"} {
		if _, err := arc.resolve(name); err == nil {
			t.Errorf("resolve(%q) succeeded", name)
		}
	}
}

func TestCleanEntry(t *testing.T) {
	for in, want := range map[string]string{
		"./index.json": "index.json", "/blobs/sha256/x": "blobs/sha256/x", "a/../b": "b", "../../c": "c",
	} {
		if got := cleanEntry(in); got != want {
			t.Errorf("cleanEntry(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSnapshotTree(t *testing.T) {
	views := []snapshotView{
		{Key: "a"}, {Key: "b", Parent: "a"}, {Key: "c", Parent: "b"}, {Key: "d", Parent: "a"},
		{Key: "e", Parent: "gone"}, // a parent not listed makes a root
	}
	var buf bytes.Buffer
	for _, r := range snapshotTree(views) {
		if err := writeTree(&buf, r, 0); err != nil {
			t.Fatal(err)
		}
	}
	want := " a\n  \\_ b\n    \\_ c\n  \\_ d\n e\n"
	if buf.String() != want {
		t.Errorf("tree:\n%s\nwant:\n%s", buf.String(), want)
	}
}
