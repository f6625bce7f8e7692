package mount

import (
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func TestParseOptions(t *testing.T) {
	for _, tc := range []struct {
		opts        []string
		flags       uintptr
		propagation uintptr
		data        []string
	}{
		{opts: []string{"ro", "rbind"}, flags: unix.MS_RDONLY | unix.MS_BIND | unix.MS_REC},
		{opts: []string{"ro", "rw", "bind"}, flags: unix.MS_BIND},
		{opts: []string{"nosuid", "nodev", "suid", "rprivate"}, flags: unix.MS_NODEV, propagation: unix.MS_PRIVATE | unix.MS_REC},
		{opts: []string{"index=off", "lowerdir=/a:/b", "noatime"}, flags: unix.MS_NOATIME, data: []string{"index=off", "lowerdir=/a:/b"}},
	} {
		o, err := parseOptions(tc.opts)
		if err != nil {
			t.Fatalf("%q: %v", tc.opts, err)
		}
		if o.flags != tc.flags || o.propagation != tc.propagation || !slices.Equal(o.data, tc.data) {
			t.Errorf("%q: got flags %#x propagation %#x data %q, want %#x %#x %q",
				tc.opts, o.flags, o.propagation, o.data, tc.flags, tc.propagation, tc.data)
		}
	}
	if _, err := parseOptions([]string{"loop"}); !errdefs.IsNotImplemented(err) {
		t.Errorf("loop: got %v, want NotImplemented", err)
	}
}

func TestCompactLowerdirs(t *testing.T) {
	data := []string{"workdir=/r/snapshots/9/work", "upperdir=/r/snapshots/9/fs", "lowerdir=/r/snapshots/3/fs:/r/snapshots/12/fs:/r/snapshots/1/fs", "index=off"}
	chdir, out := compactLowerdirs(data)
	if chdir != "/r/snapshots" {
		t.Errorf("chdir = %q, want /r/snapshots", chdir)
	}
	want := "lowerdir=3/fs:12/fs:1/fs"
	if out[2] != want || out[0] != data[0] || out[3] != data[3] {
		t.Errorf("got %q, want lowerdir %q and the rest unchanged", out, want)
	}
	if data[2] == want {
		t.Error("compactLowerdirs changed its argument")
	}
	for _, dirs := range []string{"lowerdir=/a/fs:/b/fs", "lowerdir=rel/1:rel/2"} {
		if chdir, out := compactLowerdirs([]string{dirs}); chdir != "" || out[0] != dirs {
			t.Errorf("%s: got %q %q, want no change", dirs, chdir, out)
		}
	}
	if got := commonParent([]string{"/x/y/1/fs", "/x/y/1/fs"}); got != "/x/y/1" {
		t.Errorf("commonParent of one path twice = %q", got)
	}
	if got := unescapeMountinfo(`/tmp/a\040b\134c`); got != `/tmp/a b\c` {
		t.Errorf("unescape = %q", got)
	}
	if strings.Contains(unescapeMountinfo(`/a\04`), " ") {
		t.Error("short escape decoded")
	}
}
