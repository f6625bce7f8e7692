package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
)

// interruptedIngest is a `ctr content ingest` fed through a pipe that the
// test holds open after the first part, so the daemon can be killed while
// the ingest is surely in flight.
type interruptedIngest struct {
	ctr *background
	w   *os.File
}

func startIngest(t *testing.T, d *daemon, ns, ref string, first []byte) *interruptedIngest {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	ing := &interruptedIngest{ctr: d.ctrBackground(r, "-n", ns, "content", "ingest", ref), w: w}
	r.Close()
	go func() { _, _ = w.Write(first) }() // fails with EPIPE once ctr is gone
	return ing
}

// activeSizes parses `ctr content active` into REF -> SIZE column.
func activeSizes(t *testing.T, out string) map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "REF") {
		t.Fatalf("ctr content active printed no table:\n%s", out)
	}
	got := map[string]string{}
	for _, line := range lines[1:] {
		if f := strings.Fields(line); len(f) >= 2 {
			got[f[0]] = f[1]
		}
	}
	return got
}

// waitProgress waits until ctr content active shows ref with bytes.
func waitProgress(t *testing.T, d *daemon, ns, ref string) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		size, ok := activeSizes(t, d.mustCtr("-n", ns, "content", "active"))[ref]
		if !ok || size == "0B" {
			return fmt.Errorf("ctr content active shows %s at %q, want some progress", ref, size)
		}
		return nil
	})
}

func TestCrash(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	blob := randomBlob(t, 24<<20)
	dgst := digestOf(blob)
	resumed := startIngest(t, d, "crash", "resumed", blob[:3<<20])
	// ctr sends nothing before it has read 1 MiB.
	aborted := startIngest(t, d, "crash", "aborted", blob[:2<<20])
	waitProgress(t, d, "crash", "resumed")
	waitProgress(t, d, "crash", "aborted")

	// A second berthd on the same root refuses to start.
	out, code := d.runBerthd("--address", filepath.Join(filepath.Dir(d.Address), "second.sock"))
	if code == 0 {
		t.Fatalf("second berthd on the same root exited 0, want an error; output:\n%s", out)
	}
	for _, want := range []string{d.Root, "berthd.lock", fmt.Sprintf("pid %d", d.pid())} {
		if !strings.Contains(out, want) {
			t.Errorf("second berthd output %q lacks %q", out, want)
		}
	}

	d.kill()
	for _, ing := range []*interruptedIngest{resumed, aborted} {
		ing.w.Close()
		if !ing.ctr.wait(10 * time.Second) {
			t.Fatal("ctr content ingest still running after berthd was killed")
		}
		if ing.ctr.err == nil {
			t.Errorf("ctr content ingest succeeded although berthd was killed midway")
		}
	}

	// A SIGKILL leaves the root lock free.
	d.start()
	if got := contentLabels(t, d.mustCtr("-n", "crash", "content", "ls")); len(got) != 0 {
		t.Errorf("content after the crash = %v, want nothing committed", got)
	}
	active := activeSizes(t, d.mustCtr("-n", "crash", "content", "active"))
	for _, ref := range []string{"resumed", "aborted"} {
		if size, ok := active[ref]; !ok || size == "0B" {
			t.Errorf("content active after restart shows %s at %q, want the interrupted ingest with its bytes", ref, size)
		}
	}

	d.mustCtrIn(fileOf(t, blob), "-n", "crash", "content", "ingest", "--expected-digest", dgst, "resumed")
	if got := contentLabels(t, d.mustCtr("-n", "crash", "content", "ls")); len(got) != 1 || got[dgst] == "" {
		t.Errorf("content after resuming = %v, want %s", got, dgst)
	}
	if got := d.mustCtr("-n", "crash", "content", "get", dgst); got != string(blob) {
		t.Errorf("content get after resuming: %d bytes differ from the %d ingested", len(got), len(blob))
	}

	if _, err := contentapi.NewContentClient(d.client()).Abort(nsContext(t, "crash", ""), &contentapi.AbortRequest{Ref: "aborted"}); err != nil {
		t.Fatalf("abort the interrupted ingest: %v", err)
	}
	if active := activeSizes(t, d.mustCtr("-n", "crash", "content", "active")); len(active) != 0 {
		t.Errorf("content active after resume and abort = %v, want nothing", active)
	}
	if left, _ := filepath.Glob(filepath.Join(d.Root, "io.containerd.content.v1.content", "ingest", "*")); len(left) != 0 {
		t.Errorf("ingest directories left on disk: %v", left)
	}
	d.mustCtr("-n", "crash", "content", "rm", dgst)
	d.waitBlobGone(dgst)
}

// fileOf returns b as an open file: ctr resumes an ingest by seeking its
// stdin to the ingest's offset.
func fileOf(t *testing.T, b []byte) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestShutdownDuringIngest stops berthd with SIGTERM while an upload
// stalls: berthd gives it a few seconds, exits 0, and the ingest resumes
// after a restart.
func TestShutdownDuringIngest(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	blob := randomBlob(t, 4<<20)
	ing := startIngest(t, d, "stop", "stalled", blob[:2<<20])
	waitProgress(t, d, "stop", "stalled")

	d.stopWithin(8 * time.Second)
	ing.w.Close()
	if !ing.ctr.wait(10*time.Second) || ing.ctr.err == nil {
		t.Errorf("ctr content ingest: %v, want a failure once berthd stopped", ing.ctr.err)
	}

	d.start()
	if size := activeSizes(t, d.mustCtr("-n", "stop", "content", "active"))["stalled"]; size == "" || size == "0B" {
		t.Errorf("content active after restart shows stalled at %q, want its bytes", size)
	}
	d.mustCtrIn(fileOf(t, blob), "-n", "stop", "content", "ingest", "--expected-digest", digestOf(blob), "stalled")
	if got := d.mustCtr("-n", "stop", "content", "get", digestOf(blob)); got != string(blob) {
		t.Errorf("content get after resuming: bytes differ")
	}
}
