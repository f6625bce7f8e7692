package oci

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseVolume(t *testing.T) {
	host := t.TempDir()
	file := filepath.Join(host, "config.yaml")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bind := func(src, dst string, opts ...string) specs.Mount {
		return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: append([]string{"rbind"}, opts...)}
	}
	for _, tc := range []struct {
		v    string
		want specs.Mount
	}{
		{host + ":/data", bind(host, "/data", "rw", "rprivate")},
		{host + "/:/data/", bind(host, "/data", "rw", "rprivate")},
		{host + "/../" + filepath.Base(host) + ":/a/./b", bind(host, "/a/b", "rw", "rprivate")},
		{host + ":/data:ro", bind(host, "/data", "ro", "rprivate")},
		{host + ":/data:rw", bind(host, "/data", "rw", "rprivate")},
		{host + ":/data:rshared", bind(host, "/data", "rw", "rshared")},
		{host + ":/data:ro,slave", bind(host, "/data", "ro", "slave")},
		{host + ":/data:private,rw", bind(host, "/data", "rw", "private")},
		{file + ":/etc/app/config.yaml:ro", bind(file, "/etc/app/config.yaml", "ro", "rprivate")},
	} {
		got, err := ParseVolume(tc.v)
		if err != nil {
			t.Errorf("%q: %v", tc.v, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.v, diff)
		}
	}
}

// A host path starting with "." is relative to the working directory, as
// docker's CLI takes it.
func TestParseVolumeRelativeHostPath(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	got, err := ParseVolume("./data:/data:ro")
	if err != nil {
		t.Fatal(err)
	}
	if got.Source != filepath.Join(dir, "data") {
		t.Errorf("source %q, want %q", got.Source, filepath.Join(dir, "data"))
	}
}

func TestParseVolumeErrors(t *testing.T) {
	host := t.TempDir()
	missing := filepath.Join(host, "missing")
	file := filepath.Join(host, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		v     string
		class error
		says  []string
	}{
		{"/data", errdefs.ErrNotImplemented, []string{"anonymous volumes are not supported"}},
		{"mydata:/data", errdefs.ErrNotImplemented, []string{`"mydata"`, "named volumes are not supported"}},
		{missing + ":/data", errdefs.ErrNotFound, []string{missing, "does not exist", "create it"}},
		{file + "/sub:/data", errdefs.ErrNotFound, []string{"does not exist"}},
		{host + "\x00:/data", errdefs.ErrInvalidArgument, []string{"NUL"}},
		{host + ":data", errdefs.ErrInvalidArgument, []string{`container path "data"`, "not absolute"}},
		{host + ":", errdefs.ErrInvalidArgument, []string{`container path ""`}},
		{host + ":/", errdefs.ErrInvalidArgument, []string{"root"}},
		{":/data", errdefs.ErrInvalidArgument, []string{"empty host path"}},
		{"data", errdefs.ErrInvalidArgument, []string{"host:container"}},
		{host + ":/data:ro:z", errdefs.ErrInvalidArgument, []string{"too many"}},
		{host + ":/data:ro,rw", errdefs.ErrInvalidArgument, []string{"more than one of ro and rw"}},
		{host + ":/data:shared,slave", errdefs.ErrInvalidArgument, []string{"more than one propagation"}},
		{host + ":/data:z", errdefs.ErrInvalidArgument, []string{`option "z"`}},
		{host + ":/data:", errdefs.ErrInvalidArgument, []string{`option ""`}},
		{host + ":/data:ro,", errdefs.ErrInvalidArgument, []string{`option ""`}},
	} {
		_, err := ParseVolume(tc.v)
		wantErr(t, err, tc.class, append(tc.says, strconv.Quote(tc.v))...)
	}
}

// -v comes from users and scripts: the parser never panics and returns a
// clean bind mount or an error of a class.
func FuzzParseVolume(f *testing.F) {
	for _, s := range []string{"/tmp:/data", "/tmp:/data:ro,rshared", "/data", "name:/x", ":::", "/tmp:/:rw"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		m, err := ParseVolume(v)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) && !errors.Is(err, errdefs.ErrNotFound) && !errors.Is(err, errdefs.ErrNotImplemented) {
				t.Errorf("%q: error %v has no class", v, err)
			}
			return
		}
		if m.Type != "bind" || !filepath.IsAbs(m.Source) || !strings.HasPrefix(m.Destination, "/") || m.Destination == "/" || len(m.Options) != 3 {
			t.Errorf("%q: mount %+v", v, m)
		}
	})
}
