package oci

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const testPasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:1001::/home/bob:/bin/sh
# a comment:x:5:5
+nisuser
broken:x:notanumber:1:::
`

const testGroup = `root:x:0:
wheel:x:10:root,alice
staff:x:50:alice,bob
alice:x:1000:
bob:x:1001:
docker:x:999:alice
wheel2:x:10:alice
`

// writeTree creates files (path -> content) and symlinks (path -> "@target")
// under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if target, ok := strings.CutPrefix(content, "@"); ok {
			err = os.Symlink(target, p)
		} else {
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// withoutOpenat2 runs the rest of the test as on a kernel without openat2.
func withoutOpenat2(t *testing.T) {
	orig := openat2
	t.Cleanup(func() { openat2 = orig })
	openat2 = func(int, string, *unix.OpenHow) (int, error) { return -1, unix.ENOSYS }
}

// bothResolvers runs f with openat2 and with the fallback resolver.
func bothResolvers(t *testing.T, f func(t *testing.T)) {
	t.Run("openat2", f)
	t.Run("fallback", func(t *testing.T) {
		withoutOpenat2(t)
		f(t)
	})
}

func TestResolveUser(t *testing.T) {
	rootfs := t.TempDir()
	writeTree(t, rootfs, map[string]string{"etc/passwd": testPasswd, "etc/group": testGroup})
	bothResolvers(t, func(t *testing.T) {
		for _, tc := range []struct {
			user string
			want specs.User
		}{
			{"", specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0, 10}}},
			{"root", specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0, 10}}},
			{"0", specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0, 10}}},
			{"alice", specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 10, 50, 999}}},
			{"1000", specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 10, 50, 999}}},
			{"bob", specs.User{UID: 1001, GID: 1001, AdditionalGids: []uint32{1001, 50}}},
			{"daemon", specs.User{UID: 1, GID: 1, AdditionalGids: []uint32{1}}},
			{"alice:staff", specs.User{UID: 1000, GID: 50, AdditionalGids: []uint32{50}}},
			{"alice:0", specs.User{UID: 1000, GID: 0, AdditionalGids: []uint32{0}}},
			{"1000:1001", specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{1001}}},
			{"4242", specs.User{UID: 4242, GID: 0, AdditionalGids: []uint32{0}}},
			{"4242:docker", specs.User{UID: 4242, GID: 999, AdditionalGids: []uint32{999}}},
			{":staff", specs.User{UID: 0, GID: 50, AdditionalGids: []uint32{50}}},
			{"4294967294:4294967294", specs.User{UID: 4294967294, GID: 4294967294, AdditionalGids: []uint32{4294967294}}},
		} {
			got, err := ResolveUser(rootfs, tc.user)
			if err != nil {
				t.Errorf("%q: %v", tc.user, err)
				continue
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("%q (-want +got):\n%s", tc.user, diff)
			}
		}
	})
}

func TestResolveUserErrors(t *testing.T) {
	rootfs := t.TempDir()
	writeTree(t, rootfs, map[string]string{"etc/passwd": testPasswd, "etc/group": testGroup})
	empty := t.TempDir()
	for _, tc := range []struct {
		rootfs, user string
		class        error
		says         []string
	}{
		{rootfs, "nobody", errdefs.ErrNotFound, []string{`user "nobody"`, "/etc/passwd", rootfs}},
		{rootfs, "broken", errdefs.ErrNotFound, []string{`user "broken"`, "/etc/passwd"}},
		{rootfs, "alice:nogroup", errdefs.ErrNotFound, []string{`group "nogroup"`, "/etc/group", rootfs}},
		{rootfs, "alice:", errdefs.ErrInvalidArgument, []string{"empty group"}},
		{rootfs, "99999999999", errdefs.ErrInvalidArgument, []string{"uid 99999999999"}},
		{rootfs, "4294967295", errdefs.ErrInvalidArgument, []string{"out of range"}},
		{rootfs, "0:99999999999", errdefs.ErrInvalidArgument, []string{"gid 99999999999"}},
		{empty, "alice", errdefs.ErrNotFound, []string{`user "alice"`, "has no /etc/passwd", "numeric ids work"}},
		{empty, "0:wheel", errdefs.ErrNotFound, []string{`group "wheel"`, "has no /etc/group"}},
	} {
		_, err := ResolveUser(tc.rootfs, tc.user)
		wantErr(t, err, tc.class, tc.says...)
	}
}

// An image without the files still runs numeric users.
func TestResolveUserWithoutFiles(t *testing.T) {
	empty := t.TempDir()
	for user, want := range map[string]specs.User{
		"":          {AdditionalGids: []uint32{0}},
		"0":         {AdditionalGids: []uint32{0}},
		"1000":      {UID: 1000, AdditionalGids: []uint32{0}},
		"1000:1000": {UID: 1000, GID: 1000, AdditionalGids: []uint32{1000}},
	} {
		got, err := ResolveUser(empty, user)
		if err != nil {
			t.Errorf("%q: %v", user, err)
		} else if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", user, diff)
		}
	}
}

// Links in the image resolve inside its rootfs, never on the host.
func TestResolveUserLinksStayInRootfs(t *testing.T) {
	inside := "eve:x:4000:4000::/:/bin/sh\n"
	outside := "eve:x:6666:6666::/:/bin/sh\n"
	for _, tc := range []struct {
		name  string
		files map[string]string // under <tmp>/a/rootfs; "../x" entries are outside it
	}{
		{"relative link climbing out to a test file", map[string]string{
			"etc/passwd": "@../../etc/shadow", "etc/shadow": inside, "../etc/shadow": outside}},
		{"relative link climbing out to the host", map[string]string{
			"etc/passwd": "@../../../../etc/shadow", "etc/shadow": inside}},
		{"absolute link", map[string]string{
			"etc/passwd": "@/etc/shadow", "etc/shadow": inside}},
		{"absolute link to a file that exists outside", map[string]string{
			"etc/passwd": "@/../etc/shadow", "etc/shadow": inside, "../etc/shadow": outside}},
		{"linked directory", map[string]string{
			"etc": "@/data/../../real-etc", "data/x": "", "real-etc/passwd": inside, "../real-etc/passwd": outside}},
		{"chain of links", map[string]string{
			"etc/passwd": "@../usr/lib/passwd", "usr/lib": "@../../../lib", "lib/passwd": inside, "../lib/passwd": outside}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := filepath.Join(t.TempDir(), "a")
			rootfs := filepath.Join(base, "rootfs")
			writeTree(t, rootfs, tc.files)
			bothResolvers(t, func(t *testing.T) {
				u, err := ResolveUser(rootfs, "eve")
				if err != nil {
					t.Fatal(err)
				}
				if u.UID != 4000 {
					t.Errorf("eve is uid %d: read a file outside the rootfs", u.UID)
				}
			})
		})
	}
}

// Files an image puts in the way fail with a clear error, never hang.
func TestResolveUserHostileFiles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, rootfs string)
		says  string
	}{
		{"fifo", func(t *testing.T, rootfs string) {
			if err := unix.Mkfifo(filepath.Join(rootfs, "etc/passwd"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
		{"directory", func(t *testing.T, rootfs string) {
			if err := os.Mkdir(filepath.Join(rootfs, "etc/passwd"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
		{"link loop", func(t *testing.T, rootfs string) {
			writeTree(t, rootfs, map[string]string{"etc/passwd": "@group", "etc/group": "@passwd"})
		}, "too many levels of symbolic links"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rootfs := t.TempDir()
			if err := os.Mkdir(filepath.Join(rootfs, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			tc.setup(t, rootfs)
			bothResolvers(t, func(t *testing.T) {
				_, err := ResolveUser(rootfs, "1000")
				if err == nil || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "/etc/passwd") {
					t.Errorf("error %v, want one saying %q about /etc/passwd", err, tc.says)
				}
			})
		})
	}
}

func TestParseAccountFiles(t *testing.T) {
	users := parsePasswd([]byte(testPasswd + "no-newline:x:7:8"))
	want := []passwdEntry{{"root", 0, 0}, {"daemon", 1, 1}, {"alice", 1000, 1000}, {"bob", 1001, 1001}, {"no-newline", 7, 8}}
	if diff := cmp.Diff(want, users, cmp.AllowUnexported(passwdEntry{})); diff != "" {
		t.Errorf("passwd (-want +got):\n%s", diff)
	}
	groups := parseGroup([]byte("a:x:1:u1, u2,,\r\nshort:x\nb:x:2\n#c:x:3:u1\n"))
	wantGroups := []groupEntry{{"a", 1, []string{"u1", "u2"}}, {"b", 2, nil}}
	if diff := cmp.Diff(wantGroups, groups, cmp.AllowUnexported(groupEntry{})); diff != "" {
		t.Errorf("group (-want +got):\n%s", diff)
	}
}

// passwd and group files come from images: untrusted input.
func FuzzParsePasswd(f *testing.F) {
	f.Add([]byte(testPasswd))
	f.Add([]byte("a:x:1:2\n:::\n\x00:x:0:0"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, e := range parsePasswd(data) {
			if e.name == "" || strings.ContainsAny(e.name, ":\n") {
				t.Errorf("entry %+v from %q", e, data)
			}
		}
	})
}

func FuzzParseGroup(f *testing.F) {
	f.Add([]byte(testGroup))
	f.Add([]byte("g:x:1:a,,b,\n:x:2:\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, g := range parseGroup(data) {
			if g.name == "" || strings.ContainsAny(g.name, ":\n") {
				t.Errorf("group %+v from %q", g, data)
			}
			for _, m := range g.members {
				if m == "" || strings.ContainsAny(m, ",:\n") {
					t.Errorf("member %q of %+v from %q", m, g, data)
				}
			}
		}
	})
}

// Link targets come from images too.
func FuzzResolveInRoot(f *testing.F) {
	f.Add("../../../etc/x", "/etc/passwd")
	f.Add("/a/../../b", "etc/../../passwd")
	f.Fuzz(func(t *testing.T, target, name string) {
		if strings.ContainsRune(target, 0) || target == "" || len(target) > 1024 {
			return
		}
		rootfs := t.TempDir()
		if err := os.Symlink(target, filepath.Join(rootfs, "link")); err != nil {
			return
		}
		got, err := resolveInRoot(rootfs, "/link/"+name)
		if err == nil && (filepath.IsAbs(got) || got == ".." || strings.HasPrefix(got, "../")) {
			t.Errorf("resolved %q (link to %q) to %q, outside the rootfs", name, target, got)
		}
	})
}
