package archive

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// escapeCase is a crafted layer that tries to reach outside the root.
type escapeCase struct {
	name    string
	entries func(s *sandbox) []entry
	// wantErr, if set, must appear in the error (it names the entry);
	// otherwise Apply must succeed and check, if set, inspects the root.
	wantErr string
	// strictErr is the error expected with WithRejectSymlinkEscapes.
	strictErr string
	check     func(t *testing.T, s *sandbox)
}

func escapeCases() []escapeCase {
	return []escapeCase{
		{name: "dotdot", wantErr: `entry "../etc/passwd": path escapes the root: invalid argument`,
			entries: func(*sandbox) []entry { return []entry{reg("../etc/passwd", "pwned")} }},
		{name: "dotdot after cleaning", wantErr: `entry "a/../../x": path escapes the root`,
			entries: func(*sandbox) []entry { return []entry{dir("a/"), reg("a/../../x", "pwned")} }},
		{name: "dotdot to sentinel", wantErr: `entry "../sentinel/victim": path escapes`,
			entries: func(*sandbox) []entry { return []entry{reg("../sentinel/victim", "pwned")} }},
		{name: "absolute dotdot", wantErr: `entry "/../sentinel/victim": path escapes`,
			entries: func(*sandbox) []entry { return []entry{reg("/../sentinel/victim", "pwned")} }},
		{name: "dotdot directory", wantErr: `entry "../": path escapes`,
			entries: func(*sandbox) []entry { return []entry{dir("../")} }},
		{name: "absolute name lands in root",
			entries: func(*sandbox) []entry { return []entry{reg("/etc/x", "ok")} },
			check:   wantFile("etc/x", "ok")},
		{name: "file through absolute symlink", strictErr: `entry "evil/file": open parent directory: path escapes`,
			entries: func(s *sandbox) []entry {
				return []entry{symlink("evil", s.sentinel), reg("evil/file", "pwned")}
			},
			check: func(t *testing.T, s *sandbox) { wantFile(s.sentinel[1:]+"/file", "pwned")(t, s) }},
		{name: "file through climbing symlink", strictErr: `entry "evil/file": open parent directory: path escapes`,
			entries: func(*sandbox) []entry { return []entry{symlink("evil", "../../.."), reg("evil/file", "pwned")} },
			check:   wantFile("file", "pwned")},
		{name: "file through symlink to sibling", strictErr: `entry "evil/victim"`,
			entries: func(*sandbox) []entry { return []entry{symlink("evil", "../sentinel"), reg("evil/victim", "pwned")} },
			check:   wantFile("sentinel/victim", "pwned")},
		{name: "symlink chain to slash", strictErr: `entry "a/etc/x"`,
			entries: func(*sandbox) []entry {
				return []entry{symlink("a", "b"), symlink("b", "/"), reg("a/etc/x", "ok")}
			},
			check: wantFile("etc/x", "ok")},
		{name: "symlink inside root is followed",
			entries: func(*sandbox) []entry {
				return []entry{dir("usr/"), dir("usr/lib/"), symlink("lib", "usr/lib"), reg("lib/x", "ok")}
			},
			check: wantFile("usr/lib/x", "ok")},
		{name: "hardlink climbing", wantErr: `entry "h": hardlink target "../../etc/passwd": path escapes`,
			entries: func(*sandbox) []entry { return []entry{hardlink("h", "../../etc/passwd")} }},
		{name: "hardlink to sentinel by dotdot", wantErr: `entry "h": hardlink target "a/../../sentinel/victim": path escapes`,
			entries: func(*sandbox) []entry { return []entry{dir("a/"), hardlink("h", "a/../../sentinel/victim")} }},
		{name: "hardlink absolute target stays in root", wantErr: `entry "h": hardlink target`,
			entries: func(s *sandbox) []entry { return []entry{hardlink("h", filepath.Join(s.sentinel, "victim"))} }},
		{name: "hardlink through symlink", wantErr: `entry "h": hardlink`,
			entries: func(s *sandbox) []entry {
				return []entry{symlink("evil", s.sentinel), hardlink("h", "evil/victim")}
			}},
		{name: "hardlink to symlink links the symlink",
			entries: func(s *sandbox) []entry {
				return []entry{symlink("s", filepath.Join(s.sentinel, "victim")), hardlink("h", "s")}
			},
			check: func(t *testing.T, s *sandbox) {
				if st := lstat(t, filepath.Join(s.root, "h")); st.Mode&0o170000 != 0o120000 || st.Nlink != 2 {
					t.Errorf("h: mode %o nlink %d, want the symlink's second name", st.Mode, st.Nlink)
				}
			}},
		{name: "file over symlink",
			entries: func(s *sandbox) []entry {
				return []entry{symlink("evil", filepath.Join(s.sentinel, "victim")), reg("evil", "pwned")}
			},
			check: wantFile("evil", "pwned")},
		{name: "file over relative symlink",
			entries: func(*sandbox) []entry { return []entry{symlink("evil", "../sentinel/victim"), reg("evil", "pwned")} },
			check:   wantFile("evil", "pwned")},
		{name: "directory over symlink",
			entries: func(s *sandbox) []entry {
				return []entry{symlink("evil", s.sentinel), dir("evil/"), reg("evil/victim", "new")}
			},
			check: wantFile("evil/victim", "new")},
		{name: "device over symlink",
			entries: func(s *sandbox) []entry {
				return []entry{symlink("evil", filepath.Join(s.sentinel, "victim")),
					{name: "evil", typ: '6', mode: 0o666}}
			}},
		{name: "symlink over symlink",
			entries: func(s *sandbox) []entry {
				return []entry{symlink("evil", s.sentinel), symlink("evil", "/etc")}
			}},
		{name: "whiteout through symlink", strictErr: `entry "evil/.wh.victim": whiteout: open parent directory: path escapes`,
			entries: func(s *sandbox) []entry {
				return []entry{symlink("evil", s.sentinel), whiteout("evil/.wh.victim"), whiteout("evil/.wh.dir")}
			}},
		{name: "whiteout through climbing symlink", strictErr: `entry "evil/.wh.victim": whiteout: open parent directory: path escapes`,
			entries: func(*sandbox) []entry {
				return []entry{symlink("evil", "../sentinel"), whiteout("evil/.wh.victim")}
			}},
		{name: "opaque through symlink", strictErr: `entry "evil/.wh..wh..opq": whiteout: open directory: path escapes`,
			entries: func(s *sandbox) []entry { return []entry{symlink("evil", s.sentinel), whiteout("evil/.wh..wh..opq")} }},
		{name: "whiteout of dotdot", wantErr: `entry ".wh...": whiteout: invalid whiteout name`,
			entries: func(*sandbox) []entry { return []entry{whiteout(".wh...")} }},
		{name: "whiteout of dot", wantErr: `entry "a/.wh..": whiteout: invalid whiteout name`,
			entries: func(*sandbox) []entry { return []entry{dir("a/"), whiteout("a/.wh..")} }},
		{name: "whiteout climbing", wantErr: `entry "../.wh.sentinel": path escapes`,
			entries: func(*sandbox) []entry { return []entry{whiteout("../.wh.sentinel")} }},
		{name: "symlink loop", wantErr: `entry "loop/x": open parent directory: too many levels of symbolic links`,
			entries: func(*sandbox) []entry { return []entry{symlink("loop", "loop"), reg("loop/x", "")} }},
		{name: "parent through symlink to a file", wantErr: `entry "f/x": open parent directory: not a directory`,
			entries: func(*sandbox) []entry { return []entry{reg("file", "x"), symlink("f", "file"), reg("f/x", "")} }},
		{name: "dangling symlink parent is made inside root", strictErr: `entry "evil/x"`,
			entries: func(s *sandbox) []entry {
				return []entry{symlink("evil", filepath.Join(s.sentinel, "newdir")), reg("evil/x", "ok")}
			},
			check: func(t *testing.T, s *sandbox) { wantFile(s.sentinel[1:]+"/newdir/x", "ok")(t, s) }},
		{name: "xattr on symlink to outside",
			entries: func(s *sandbox) []entry {
				e := symlink("evil", filepath.Join(s.sentinel, "victim"))
				e.xattrs = map[string]string{"user.pwned": "1", "trusted.pwned": "1"}
				return []entry{e}
			}},
		{name: "root entry is ignored",
			entries: func(*sandbox) []entry { return []entry{{name: "./", typ: '5', mode: 0o777}, reg(".", "")} },
			check: func(t *testing.T, s *sandbox) {
				if st := lstat(t, s.root); st.Mode&0o777 != 0o755 {
					t.Errorf("root mode %o changed", st.Mode&0o777)
				}
			}},
	}
}

func wantFile(rel, data string) func(*testing.T, *sandbox) {
	return func(t *testing.T, s *sandbox) {
		t.Helper()
		p := filepath.Join(s.root, rel)
		st := lstat(t, p)
		if st.Mode&0o170000 != 0o100000 {
			t.Fatalf("%s: mode %o, want a regular file", rel, st.Mode)
		}
		if got := readFile(t, p); got != data {
			t.Errorf("%s = %q, want %q", rel, got, data)
		}
	}
}

func TestApplyNeverEscapes(t *testing.T) {
	for _, mode := range resolverModes {
		for _, overlay := range []bool{false, true} {
			for _, strict := range []bool{false, true} {
				for _, tc := range escapeCases() {
					name := mode.name + "/" + tc.name
					if overlay {
						name += "/overlay"
					}
					if strict {
						name += "/strict"
					}
					t.Run(name, func(t *testing.T) {
						opts := append([]ApplyOpt{WithConvertWhiteout(overlay), WithRejectSymlinkEscapes(strict)}, mode.opts...)
						runEscapeCase(t, tc, strict, opts)
					})
				}
			}
		}
	}
}

func runEscapeCase(t *testing.T, tc escapeCase, strict bool, opts []ApplyOpt) {
	s := newSandbox(t)
	err := apply(t, s.root, tc.entries(s), opts...)
	defer s.check(t)
	want := tc.wantErr
	if strict && tc.strictErr != "" {
		want = tc.strictErr
	}
	switch {
	case want != "" && err == nil:
		t.Fatalf("Apply succeeded, want error %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("Apply error %q, want it to contain %q", err, want)
	case want == "" && err != nil:
		t.Fatalf("Apply: %v", err)
	case want == "" && tc.check != nil:
		tc.check(t, s)
	}
}

// TestHardlinkToHostFile makes sure an absolute hardlink target names a
// path in the root, not the host file of that name.
func TestHardlinkToHostFile(t *testing.T) {
	s := newSandbox(t)
	before := lstat(t, "/etc/passwd").Nlink
	err := apply(t, s.root, []entry{hardlink("h", "/etc/passwd")})
	if err == nil || !strings.Contains(err.Error(), `entry "h"`) {
		t.Fatalf("got %v, want an error naming the entry", err)
	}
	if after := lstat(t, "/etc/passwd").Nlink; after != before {
		t.Fatalf("/etc/passwd link count %d -> %d", before, after)
	}
	if _, err := os.Lstat(filepath.Join(s.root, "h")); err == nil {
		t.Fatal("h was created")
	}
	s.check(t)
}
