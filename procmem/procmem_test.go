package procmem

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestTextMapping(t *testing.T) {
	const exe = "/usr/bin/berthd"
	for _, tc := range []struct {
		line string
		ok   bool
	}{
		{"00400000-00c00000 r-xp 00000000 08:01 42 /usr/bin/berthd", true},
		{"00c00000-01400000 r--p 00800000 08:01 42 /usr/bin/berthd", true},
		{"01400000-01500000 rw-p 01000000 08:01 42 /usr/bin/berthd", false},
		{"7f00-7f10 r-xp 00000000 08:01 43 /usr/lib/other", false},
		{"7f00-7f10 rw-p 00000000 00:00 0", false},
		{"zz-7f10 r-xp 00000000 08:01 42 /usr/bin/berthd", false},
	} {
		_, _, ok := textMapping(tc.line, exe)
		if ok != tc.ok {
			t.Errorf("textMapping(%q) = %v, want %v", tc.line, ok, tc.ok)
		}
	}
}

// rssFile reads RssFile (KiB) from /proc/self/status.
func rssFile(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			n, err := strconv.Atoi(strings.Fields(v)[0])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// The test binary keeps running after TrimText: the code it needs comes
// back, and the resident file pages drop.
func TestTrimText(t *testing.T) {
	before := rssFile(t)
	n, err := TrimText()
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no mapping of the test binary was advised")
	}
	after := rssFile(t)
	if after >= before {
		t.Errorf("RssFile %d KiB after TrimText, %d before", after, before)
	}
	t.Logf("RssFile %d → %d KiB (%d bytes of mappings)", before, after, n)
}
