package integration

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// contentLabels parses `ctr content ls` into DIGEST -> LABELS column.
func contentLabels(t *testing.T, out string) map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "DIGEST") {
		t.Fatalf("ctr content ls printed no table:\n%s", out)
	}
	got := map[string]string{}
	for _, line := range lines[1:] {
		f := strings.Split(line, "\t")
		got[f[0]] = f[len(f)-1]
	}
	return got
}

func randomBlob(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestContent(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	blob := randomBlob(t, 64<<10)
	dgst := digestOf(blob)

	d.mustCtrIn(bytes.NewReader(blob), "-n", "a", "content", "ingest", "REF")
	if got := contentLabels(t, d.mustCtr("-n", "a", "content", "ls")); len(got) != 1 || got[dgst] != "-" {
		t.Errorf("content ls in a = %v, want only %s without labels", got, dgst)
	}
	if got := contentLabels(t, d.mustCtr("-n", "b", "content", "ls")); len(got) != 0 {
		t.Errorf("content ls in b = %v, want nothing: namespaces are separate", got)
	}

	d.mustCtrIn(bytes.NewReader(blob), "-n", "b", "content", "ingest", "REF2")
	if got := contentLabels(t, d.mustCtr("-n", "b", "content", "ls")); len(got) != 1 || got[dgst] != "-" {
		t.Errorf("content ls in b after ingest = %v, want only %s", got, dgst)
	}
	if got := d.blobFiles(); len(got) != 1 || got[0] != d.blobPath(dgst) {
		t.Errorf("blob files after ingest in two namespaces = %v, want the one file %s", got, d.blobPath(dgst))
	}
	for _, ns := range []string{"a", "b"} {
		if got := d.mustCtr("-n", ns, "content", "get", dgst); got != string(blob) {
			t.Errorf("content get in %s: %d bytes differ from the %d ingested", ns, len(got), len(blob))
		}
	}
	if got := strings.Split(strings.TrimSpace(d.mustCtr("-n", "a", "content", "active")), "\n"); len(got) != 1 {
		t.Errorf("content active after the ingests completed = %q, want only the header", got)
	}

	// Label updates show in ls, in their namespace only.
	d.mustCtr("-n", "a", "content", "label", dgst, "k1=v1", "k2=v2")
	got := contentLabels(t, d.mustCtr("-n", "a", "content", "ls"))[dgst]
	if parts := strings.Split(got, ","); len(parts) != 2 || !slices.Contains(parts, "k1=v1") || !slices.Contains(parts, "k2=v2") {
		t.Errorf("labels after label k1=v1 k2=v2 = %q, want k1=v1 and k2=v2", got)
	}
	d.mustCtr("-n", "a", "content", "label", dgst, "k1=")
	if got := contentLabels(t, d.mustCtr("-n", "a", "content", "ls"))[dgst]; got != "k2=v2" {
		t.Errorf("labels after label k1= (removal) = %q, want k2=v2", got)
	}
	if got := contentLabels(t, d.mustCtr("-n", "b", "content", "ls"))[dgst]; got != "-" {
		t.Errorf("labels in b after labelling in a = %q, want none", got)
	}

	// A blob another namespace holds survives rm and a collection. As in
	// containerd, a bare blob is held only as a GC root.
	d.mustCtr("-n", "b", "content", "label", dgst, "containerd.io/gc.root=yes")
	d.mustCtr("-n", "a", "content", "rm", dgst)
	if got := contentLabels(t, d.mustCtr("-n", "a", "content", "ls")); len(got) != 0 {
		t.Errorf("content ls in a after rm = %v, want nothing", got)
	}
	if got := d.mustCtr("-n", "b", "content", "get", dgst); got != string(blob) {
		t.Errorf("content get in b after rm in a: bytes differ")
	}
	d.collectGarbage()
	if !exists(d.blobPath(dgst)) {
		t.Fatalf("blob %s removed from disk while namespace b references it", dgst)
	}
	d.mustCtr("-n", "b", "content", "rm", dgst)
	d.waitBlobGone(dgst)
	if got := d.blobFiles(); len(got) != 0 {
		t.Errorf("blob files after rm in both namespaces = %v, want none", got)
	}
	if stderr := d.ctrFails("-n", "b", "content", "get", dgst); !strings.Contains(stderr, "not found") {
		t.Errorf("content get after removal: stderr %q, want not found", stderr)
	}

}

// TestUnreferencedContent: as in containerd, a blob with no image, lease
// or gc.root label goes at the next collection.
func TestUnreferencedContent(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	loose := randomBlob(t, 1000)
	d.mustCtrIn(bytes.NewReader(loose), "-n", "c", "content", "ingest", "loose")
	if !exists(d.blobPath(digestOf(loose))) {
		t.Fatalf("blob %s not on disk after ingest", digestOf(loose))
	}
	d.collectGarbage()
	if exists(d.blobPath(digestOf(loose))) {
		t.Errorf("blob %s with no image, lease or gc.root label survived a collection", digestOf(loose))
	}
	if got := contentLabels(t, d.mustCtr("-n", "c", "content", "ls")); len(got) != 0 {
		t.Errorf("content ls in c after collection = %v, want nothing", got)
	}
}

// TestConcurrentIngest ingests one blob from six ctr at once, two refs in
// each of three namespaces: every namespace gets it, the bytes are stored
// once.
func TestConcurrentIngest(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	blob := randomBlob(t, 4<<20)
	dgst := digestOf(blob)
	var jobs []*background
	for i := range 6 {
		ns, ref := fmt.Sprintf("ns%d", i%3), fmt.Sprintf("ref%d", i%2)
		jobs = append(jobs, d.ctrBackground(bytes.NewReader(blob), "-n", ns, "content", "ingest", ref))
	}
	for i, j := range jobs {
		if !j.wait(ctrTimeout) {
			t.Fatalf("ingest %d still running after %s", i, ctrTimeout)
		}
		if j.err != nil {
			t.Errorf("ingest %d: %v\n%s", i, j.err, j.stderr)
		}
	}
	for i := range 3 {
		ns := fmt.Sprintf("ns%d", i)
		if got := contentLabels(t, d.mustCtr("-n", ns, "content", "ls")); len(got) != 1 || got[dgst] == "" {
			t.Errorf("content ls in %s = %v, want only %s", ns, got, dgst)
		}
		if got := activeSizes(t, d.mustCtr("-n", ns, "content", "active")); len(got) != 0 {
			t.Errorf("content active in %s = %v, want nothing", ns, got)
		}
	}
	if got := d.blobFiles(); len(got) != 1 {
		t.Errorf("blob files = %q, want one", got)
	}
	if left, _ := filepath.Glob(filepath.Join(d.Root, "io.containerd.content.v1.content", "ingest", "*")); len(left) != 0 {
		t.Errorf("ingest directories left on disk: %v", left)
	}
}
