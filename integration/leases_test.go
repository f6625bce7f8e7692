package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
)

// writeBlob writes data as ingest ref through the Content API; with commit
// false it leaves the ingest open, as an interrupted download would.
func writeBlob(ctx context.Context, t *testing.T, d *daemon, ref string, data []byte, commit bool) {
	t.Helper()
	stream, err := contentapi.NewContentClient(d.client()).Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := &contentapi.WriteContentRequest{Action: contentapi.WriteAction_WRITE, Ref: ref, Data: data}
	if commit {
		req.Action, req.Total, req.Expected = contentapi.WriteAction_COMMIT, int64(len(data)), digestOf(data)
	}
	if err := stream.Send(req); err != nil {
		t.Fatalf("write %s: %v", ref, err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("write %s: %v", ref, err)
	}
	if resp.Offset != int64(len(data)) {
		t.Errorf("write %s: offset %d, want %d", ref, resp.Offset, len(data))
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
}

// leaseIDs parses the ID column of `ctr leases ls`.
func leaseIDs(t *testing.T, out string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("ctr leases ls printed no table:\n%s", out)
	}
	var ids []string
	for _, line := range lines[1:] {
		ids = append(ids, strings.Fields(line)[0])
	}
	return ids
}

func TestLeases(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)

	if got := strings.TrimSpace(d.mustCtr("-n", "l", "leases", "create", "--id", "L", "purpose=test")); got != "L" {
		t.Errorf("leases create printed %q, want the id L", got)
	}
	out := d.mustCtr("-n", "l", "leases", "ls")
	if got := leaseIDs(t, out); len(got) != 1 || got[0] != "L" || !strings.Contains(out, "purpose=test") {
		t.Errorf("leases ls in l:\n%s\nwant lease L with purpose=test", out)
	}
	if got := leaseIDs(t, d.mustCtr("-n", "other", "leases", "ls")); len(got) != 0 {
		t.Errorf("leases ls in other = %q, want none", got)
	}
	if stderr := d.ctrFails("-n", "l", "leases", "create", "--id", "L"); !strings.Contains(stderr, "already exists") {
		t.Errorf("second lease L: stderr %q, want already exists", stderr)
	}

	blob := randomBlob(t, 4096)
	partial := randomBlob(t, 1000)
	leased := nsContext(t, "l", "L")
	writeBlob(leased, t, d, "leased-blob", blob, true)
	writeBlob(leased, t, d, "leased-ingest", partial, false)
	res, err := leasesapi.NewLeasesClient(d.client()).ListResources(nsContext(t, "l", ""), &leasesapi.ListResourcesRequest{ID: "L"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res.Resources {
		got = append(got, r.Type+" "+r.ID)
	}
	for _, want := range []string{"content " + digestOf(blob), "ingests leased-ingest"} {
		if !strings.Contains(strings.Join(got, "\n"), want) {
			t.Errorf("resources of lease L = %q, want %q among them", got, want)
		}
	}

	d.collectGarbage()
	if !exists(d.blobPath(digestOf(blob))) {
		t.Fatalf("blob written under lease L collected while L lives")
	}
	if active := d.mustCtr("-n", "l", "content", "active"); !strings.Contains(active, "leased-ingest") {
		t.Errorf("content active while L lives:\n%s\nwant leased-ingest", active)
	}

	d.mustCtr("-n", "l", "leases", "rm", "--sync", "L")
	if exists(d.blobPath(digestOf(blob))) {
		t.Errorf("blob of lease L still on disk after leases rm --sync L")
	}
	if active := d.mustCtr("-n", "l", "content", "active"); strings.Contains(active, "leased-ingest") {
		t.Errorf("content active after leases rm --sync L:\n%s\nwant the ingest gone", active)
	}
	if got := leaseIDs(t, d.mustCtr("-n", "l", "leases", "ls")); len(got) != 0 {
		t.Errorf("leases after rm = %q, want none", got)
	}
	if stderr := d.ctrFails("-n", "l", "leases", "rm", "L"); !strings.Contains(stderr, "not found") {
		t.Errorf("rm of a removed lease: stderr %q, want not found", stderr)
	}
}

// TestLeaseWithoutID: containerd's service makes up an ID when the
// request has none.
func TestLeaseWithoutID(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	resp, err := leasesapi.NewLeasesClient(d.client()).Create(nsContext(t, "l", ""), &leasesapi.CreateRequest{})
	if err != nil {
		t.Fatalf("create a lease without an ID: %v", err)
	}
	id := resp.Lease.ID
	if got := leaseIDs(t, d.mustCtr("-n", "l", "leases", "ls")); !slices.Equal(got, []string{id}) {
		t.Errorf("leases ls = %q, want [%s]", got, id)
	}
	d.mustCtr("-n", "l", "leases", "rm", id)
}

// TestLeaseExpiry: a lease with containerd.io/gc.expire holds its
// resources until then, and the first collection after removes it and them.
func TestLeaseExpiry(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	// ctr writes the expiry with a precision of one second: E expires
	// between 1 and 2 seconds from now.
	d.mustCtr("-n", "l", "leases", "create", "--id", "E", "--expires", "2s")
	created := time.Now()
	if out := d.mustCtr("-n", "l", "leases", "ls"); !strings.Contains(out, "containerd.io/gc.expire=") {
		t.Errorf("leases ls:\n%s\nwant E with a containerd.io/gc.expire label", out)
	}
	short := randomBlob(t, 100)
	writeBlob(nsContext(t, "l", "E"), t, d, "short-lived", short, true)
	d.collectGarbage()
	if time.Since(created) < 900*time.Millisecond && !exists(d.blobPath(digestOf(short))) {
		t.Fatalf("blob of lease E collected before E expired")
	}
	eventually(t, 5*time.Second, func() error {
		d.collectGarbage()
		if got := leaseIDs(t, d.mustCtr("-n", "l", "leases", "ls")); len(got) != 0 {
			return fmt.Errorf("leases %q still listed after E expired and a collection, want none", got)
		}
		return nil
	})
	if exists(d.blobPath(digestOf(short))) {
		t.Errorf("blob of expired lease E still on disk after a collection")
	}
}

// TestContainerdLeaseIDs creates leases with the IDs containerd clients
// generate (leases.WithRandomID: "<nanoseconds>-<4 chars of URL-safe
// base64>"): containerd accepts any non-empty lease ID, and ctr images
// import, pull and friends fail whenever the random part starts or ends
// with '-' or '_' if the daemon is stricter.
func TestContainerdLeaseIDs(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	for _, id := range []string{"554940298-hm3_", "12-_a3b", "7-a--b", "99-AbC9"} {
		if r := d.ctr("leases", "create", "--id", id); r.code != 0 {
			t.Errorf("leases create --id %s: %s", id, strings.TrimSpace(r.stderr))
			continue
		}
		d.mustCtr("leases", "rm", id)
	}
	// Without --id ctr makes such an ID up itself.
	for range 20 {
		r := d.ctr("leases", "create")
		if r.code != 0 {
			t.Errorf("leases create: %s", strings.TrimSpace(r.stderr))
			continue
		}
		d.mustCtr("leases", "rm", strings.TrimSpace(r.stdout))
	}
}
