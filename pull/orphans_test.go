package pull_test

import (
	"context"
	"testing"

	"github.com/berth-dev/berth/content"
	"github.com/berth-dev/berth/leases"
	"github.com/berth-dev/berth/pull"
)

// TestPullLeasesLabelled stops a pull half way and checks that every
// lease it holds, its own and its downloads', carries pull.LeaseLabel.
func TestPullLeasesLabelled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	own := ownPlatform()
	l := makeLayer(t, file("big", randomText(3, 1<<20)))
	im := e.reg.addImage(t, &own, l)
	e.reg.tag("example.com/labelled:1", im.manifest)
	f, reached, release := gated(l.desc.Size / 2)
	e.reg.setFault(l.desc.Digest, f)

	p := e.startPull(e.ctx, "example.com/labelled:1")
	defer func() { release(); <-p.done }()
	wait(t, "the layer's body to stop half way", reached)
	ls, err := e.db.Leases().List(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) < 2 {
		t.Errorf("leases of a pull with a download under way = %v, want the pull's and the download's", ls)
	}
	for _, l := range ls {
		if l.Labels[pull.LeaseLabel] == "" {
			t.Errorf("lease %s of the pull lacks label %s: %v", l.ID, pull.LeaseLabel, l.Labels)
		}
	}
	release()
	if err := p.wait(t); err != nil {
		t.Fatal(err)
	}
	e.checkClean(e.ctx)
}

// TestReleaseOrphans leaves what a berthd killed mid-pull leaves, an
// ingest and an active snapshot under a pull's lease, next to a user's
// lease holding the same: ReleaseOrphans releases only the pull's, and a
// collection takes what it held.
func TestReleaseOrphans(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := nsCtx("other")
	hold := func(ctx context.Context, id string, lbls map[string]string) {
		t.Helper()
		if _, err := e.db.Leases().Create(ctx, leases.Lease{ID: id, Labels: lbls}); err != nil {
			t.Fatal(err)
		}
		lctx := leases.WithLease(ctx, id)
		w, err := e.db.ContentStore().Writer(lctx, content.WithRef("ingest-"+id))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("half a layer")); err != nil {
			t.Fatal(err)
		}
		w.Close()
		if _, err := e.sn().Prepare(lctx, "extract-"+id, ""); err != nil {
			t.Fatal(err)
		}
	}
	hold(e.ctx, "pull-1", map[string]string{pull.LeaseLabel: "true"})
	hold(other, "pull-2", map[string]string{pull.LeaseLabel: "true"})
	hold(e.ctx, "user", nil)

	n, err := e.puller.ReleaseOrphans(context.Background(), []string{"default", "other", "empty"})
	if err != nil || n != 2 {
		t.Fatalf("ReleaseOrphans = %d, %v; want the 2 pull leases released", n, err)
	}
	e.gc()
	for ns, want := range map[string][]string{"default": {"user"}, "other": nil} {
		ctx := nsCtx(ns)
		ls, err := e.db.Leases().List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, l := range ls {
			ids = append(ids, l.ID)
		}
		sts, err := e.db.ContentStore().ListStatuses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		snaps := e.snapshots(ctx)
		if len(ids) != len(want) || len(sts) != len(want) || len(snaps) != len(want) {
			t.Errorf("namespace %s keeps leases %v, %d ingests, %d snapshots; want only what lease(s) %v hold",
				ns, ids, len(sts), len(snaps), want)
		}
	}
}
