package metadata_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/images"
	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func manifestDesc(s string) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(s), Size: int64(len(s))}
}

func imageNames(imgs []images.Image) []string {
	var out []string
	for _, img := range imgs {
		out = append(out, img.Name)
	}
	slices.Sort(out)
	return out
}

func TestImageCreateGet(t *testing.T) {
	e := newEnv(t)
	is := e.db.Images()
	ctx := nsCtx("default")
	in := images.Image{
		Name:   "docker.io/library/busybox:latest",
		Labels: map[string]string{"app": "bb"},
		Target: ocispec.Descriptor{
			MediaType:   ocispec.MediaTypeImageIndex,
			Digest:      digest.FromString("index"),
			Size:        5,
			Annotations: map[string]string{"org.opencontainers.image.ref.name": "latest"},
		},
	}
	created, err := is.Create(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if created.CreatedAt.IsZero() || !created.CreatedAt.Equal(created.UpdatedAt) {
		t.Errorf("CreatedAt %v, UpdatedAt %v: want both set and equal", created.CreatedAt, created.UpdatedAt)
	}
	got, err := is.Get(ctx, in.Name)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != in.Name || !reflect.DeepEqual(got.Labels, in.Labels) || !reflect.DeepEqual(got.Target, in.Target) {
		t.Errorf("Get = %+v, want %+v", got, in)
	}
	if !got.CreatedAt.Equal(created.CreatedAt) {
		t.Errorf("stored CreatedAt %v, want %v", got.CreatedAt, created.CreatedAt)
	}

	_, err = is.Create(ctx, in)
	wantErr(t, err, isAlreadyExists, `image "docker.io/library/busybox:latest"`, `namespace "default"`)
}

func TestImageValidation(t *testing.T) {
	e := newEnv(t)
	is := e.db.Images()
	ctx := nsCtx("default")
	good := manifestDesc("m")
	for _, tc := range []struct {
		name string
		img  images.Image
		want string
	}{
		{"no name", images.Image{Target: good}, "name must not be empty"},
		{"no media type", images.Image{Name: "x", Target: ocispec.Descriptor{Digest: good.Digest}}, "media type must not be empty"},
		{"bad digest", images.Image{Name: "x", Target: ocispec.Descriptor{MediaType: good.MediaType, Digest: "sha256:nothex"}}, `target digest "sha256:nothex"`},
		{"no digest", images.Image{Name: "x", Target: ocispec.Descriptor{MediaType: good.MediaType}}, "target digest"},
		{"big label", images.Image{Name: "x", Target: good, Labels: map[string]string{"k": string(make([]byte, 4096))}}, "4096"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := is.Create(ctx, tc.img)
			wantErr(t, err, isInvalid, tc.want)
		})
	}
	if imgs, _ := is.List(ctx); len(imgs) != 0 {
		t.Errorf("images after failed creates: %v", imageNames(imgs))
	}
	_, err := is.Create(nsCtx("Bad/NS"), images.Image{Name: "x", Target: good})
	wantErr(t, err, isInvalid, "namespace")
}

func TestImageList(t *testing.T) {
	e := newEnv(t)
	is := e.db.Images()
	ctx := nsCtx("default")
	for _, img := range []images.Image{
		{Name: "docker.io/library/alpine:3", Target: manifestDesc("alpine"), Labels: map[string]string{"x": "1"}},
		{Name: "docker.io/library/busybox:1", Target: manifestDesc("busybox"), Labels: map[string]string{"x": "2"}},
		{Name: "quay.io/coreos/etcd:v3", Target: manifestDesc("etcd")},
	} {
		if _, err := is.Create(ctx, img); err != nil {
			t.Fatal(err)
		}
	}
	// Another namespace's images never show.
	if _, err := is.Create(nsCtx("other"), images.Image{Name: "docker.io/library/alpine:3", Target: manifestDesc("alpine")}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		filters []string
		want    []string
	}{
		{nil, []string{"docker.io/library/alpine:3", "docker.io/library/busybox:1", "quay.io/coreos/etcd:v3"}},
		{[]string{"name==docker.io/library/busybox:1"}, []string{"docker.io/library/busybox:1"}},
		{[]string{"target.digest==" + digest.FromString("etcd").String()}, []string{"quay.io/coreos/etcd:v3"}},
		{[]string{"labels.x==2"}, []string{"docker.io/library/busybox:1"}},
		{[]string{"labels.x"}, []string{"docker.io/library/alpine:3", "docker.io/library/busybox:1"}},
		{[]string{`name~=^docker\.io/`}, []string{"docker.io/library/alpine:3", "docker.io/library/busybox:1"}},
		{[]string{"name~=etcd", "labels.x==1"}, []string{"docker.io/library/alpine:3", "quay.io/coreos/etcd:v3"}},
		{[]string{`name~=^docker,labels.x==1`}, []string{"docker.io/library/alpine:3"}},
		{[]string{"name==nothing"}, nil},
	} {
		got, err := is.List(ctx, tc.filters...)
		if err != nil {
			t.Fatalf("List(%q): %v", tc.filters, err)
		}
		if names := imageNames(got); !reflect.DeepEqual(names, tc.want) {
			t.Errorf("List(%q) = %v, want %v", tc.filters, names, tc.want)
		}
	}
	_, err := is.List(ctx, "name==")
	wantErr(t, err, isInvalid)
}

func TestImageUpdate(t *testing.T) {
	e := newEnv(t)
	is := e.db.Images()
	ctx := nsCtx("default")
	orig := images.Image{
		Name:   "img",
		Labels: map[string]string{"a": "1", "b": "2"},
		Target: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("v1"), Size: 2,
			Annotations: map[string]string{"k": "v"}},
	}
	created, err := is.Create(ctx, orig)
	if err != nil {
		t.Fatal(err)
	}
	newTarget := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("v2"), Size: 2}

	// labels.x touches one label only, whatever else the update carries.
	upd := images.Image{Name: "img", Labels: map[string]string{"c": "3", "a": "changed"}, Target: newTarget}
	got, err := is.Update(ctx, upd, "labels.c")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"a": "1", "b": "2", "c": "3"}; !reflect.DeepEqual(got.Labels, want) {
		t.Errorf("labels after labels.c = %v, want %v", got.Labels, want)
	}
	if !reflect.DeepEqual(got.Target, orig.Target) {
		t.Errorf("target changed by a labels update: %+v", got.Target)
	}
	if !got.CreatedAt.Equal(created.CreatedAt) || !got.UpdatedAt.After(created.UpdatedAt) {
		t.Errorf("times after update: created %v (was %v), updated %v (was %v)", got.CreatedAt, created.CreatedAt, got.UpdatedAt, created.UpdatedAt)
	}

	// annotations.KEY sets and deletes target annotations.
	got, err = is.Update(ctx, images.Image{Name: "img", Target: ocispec.Descriptor{Annotations: map[string]string{"n": "new"}}}, "annotations.n", "annotations.k")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"n": "new"}; !reflect.DeepEqual(got.Target.Annotations, want) {
		t.Errorf("annotations = %v, want %v", got.Target.Annotations, want)
	}

	// target replaces the descriptor.
	got, err = is.Update(ctx, images.Image{Name: "img", Target: newTarget}, "target")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Target, newTarget) {
		t.Errorf("target = %+v, want %+v", got.Target, newTarget)
	}
	stored, _ := is.Get(ctx, "img")
	if !reflect.DeepEqual(stored.Target, newTarget) || !reflect.DeepEqual(stored.Labels, got.Labels) {
		t.Errorf("stored %+v, want what Update returned %+v", stored, got)
	}

	// No field path replaces labels and target.
	got, err = is.Update(ctx, images.Image{Name: "img", Labels: map[string]string{"only": "me"}, Target: orig.Target})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Labels, map[string]string{"only": "me"}) || !reflect.DeepEqual(got.Target, orig.Target) {
		t.Errorf("full update = %+v", got)
	}

	_, err = is.Update(ctx, images.Image{Name: "img"}, "name")
	wantErr(t, err, isInvalid, `"name"`)
	_, err = is.Update(ctx, images.Image{Name: "img", Target: ocispec.Descriptor{Digest: newTarget.Digest}}, "target")
	wantErr(t, err, isInvalid, "media type")
	_, err = is.Update(ctx, images.Image{Name: "img", Target: ocispec.Descriptor{MediaType: "x", Digest: "bad"}}, "target")
	wantErr(t, err, isInvalid, `"bad"`)
	_, err = is.Update(ctx, images.Image{}, "labels")
	wantErr(t, err, isInvalid, "name")
	_, err = is.Update(ctx, images.Image{Name: "ghost"}, "labels")
	wantErr(t, err, isNotFound, `image "ghost"`)
	// The failed updates left the image alone.
	if after, _ := is.Get(ctx, "img"); !reflect.DeepEqual(after.Target, orig.Target) {
		t.Errorf("failed updates changed the target to %+v", after.Target)
	}
}

func TestImageDelete(t *testing.T) {
	e := newEnv(t)
	is := e.db.Images()
	ctx := nsCtx("default")
	if _, err := is.Create(ctx, images.Image{Name: "img", Target: manifestDesc("m")}); err != nil {
		t.Fatal(err)
	}
	if err := is.Delete(ctx, "img"); err != nil {
		t.Fatal(err)
	}
	_, err := is.Get(ctx, "img")
	wantErr(t, err, isNotFound, `image "img"`, `namespace "default"`)
	wantErr(t, is.Delete(ctx, "img"), isNotFound, `image "img"`)
}

// An image pulled into "default" and looked for in "k8s.io": the error says
// where it is.
func TestImageNotFoundNamesOtherNamespace(t *testing.T) {
	e := newEnv(t)
	is := e.db.Images()
	if _, err := is.Create(nsCtx("default"), images.Image{Name: "docker.io/library/nginx:latest", Target: manifestDesc("m")}); err != nil {
		t.Fatal(err)
	}
	k8s := nsCtx("k8s.io")
	_, err := is.Get(k8s, "docker.io/library/nginx:latest")
	wantErr(t, err, isNotFound, `namespace "k8s.io"`, `exists in namespace "default"`)
	wantErr(t, is.Delete(k8s, "docker.io/library/nginx:latest"), isNotFound, `"default"`)
	_, err = is.Update(k8s, images.Image{Name: "docker.io/library/nginx:latest"}, "labels")
	wantErr(t, err, isNotFound, `"default"`)

	_, err = is.Get(k8s, "docker.io/library/absent:latest")
	wantErr(t, err, isNotFound, `namespace "k8s.io"`)
	if err != nil && strings.Contains(err.Error(), "exists in namespace") {
		t.Errorf("error %q claims the image exists elsewhere", err)
	}
}

func TestImageEvents(t *testing.T) {
	e := newEnv(t)
	is := e.db.Images()
	ctx := nsCtx("default")
	img := images.Image{Name: "img", Target: manifestDesc("m"), Labels: map[string]string{"a": "1"}}
	if _, err := is.Create(ctx, img); err != nil {
		t.Fatal(err)
	}
	if _, err := is.Update(ctx, images.Image{Name: "img", Labels: map[string]string{"b": "2"}}, "labels.b"); err != nil {
		t.Fatal(err)
	}
	if err := is.Delete(ctx, "img"); err != nil {
		t.Fatal(err)
	}
	_, _ = is.Create(ctx, images.Image{Name: "bad"}) // fails: publishes nothing
	want := []published{
		{"default", "/images/create", &eventstypes.ImageCreate{Name: "img", Labels: map[string]string{"a": "1"}}},
		{"default", "/images/update", &eventstypes.ImageUpdate{Name: "img", Labels: map[string]string{"a": "1", "b": "2"}}},
		{"default", "/images/delete", &eventstypes.ImageDelete{Name: "img"}},
	}
	if got := e.events.take(); !reflect.DeepEqual(got, want) {
		t.Errorf("events = %+v, want %+v", got, want)
	}
}
