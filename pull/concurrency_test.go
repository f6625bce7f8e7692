package pull_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/pull"
	"github.com/containerd/errdefs"
)

// randomText returns n bytes that gzip cannot shrink much, the same for
// the same seed.
func randomText(seed uint64, n int) string {
	var key [32]byte
	key[0] = byte(seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return string(b)
}

// pulling is a pull running in the background.
type pulling struct {
	done chan struct{}
	err  error
}

func (e *env) startPull(ctx context.Context, ref string, opts ...pull.Opt) *pulling {
	p := &pulling{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		_, p.err = e.puller.Pull(ctx, e.reg, ref, opts...)
	}()
	return p
}

// wait returns the pull's error, failing the test if it takes over 20 s.
func (p *pulling) wait(t *testing.T) error {
	t.Helper()
	wait(t, "the pull to end", p.done)
	return p.err
}

// extractDir returns the directory a layer is being unpacked into: the
// source or upper directory of the namespace's extract snapshot, if any.
func (e *env) extractDir(ctx context.Context) string {
	for _, s := range e.snapshots(ctx) {
		if !strings.HasPrefix(s.Name, "extract-") {
			continue
		}
		mounts, err := e.sn().Mounts(ctx, s.Name)
		if err != nil || len(mounts) != 1 {
			continue
		}
		if mounts[0].Type == "bind" {
			return mounts[0].Source
		}
		for _, o := range mounts[0].Options {
			if upper, ok := strings.CutPrefix(o, "upperdir="); ok {
				return upper
			}
		}
	}
	return ""
}

// TestPullStreamsUnpack stops a layer's body half way and checks that the
// files of its first half are unpacked already: the unpacker follows the
// download rather than waiting for it.
func TestPullStreamsUnpack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	own := ownPlatform()
	base := makeLayer(t, file("base", "base"))
	l := makeLayer(t, file("first", "the first file"), file("big", randomText(1, 4<<20)))
	im := e.reg.addImage(t, &own, base, l)
	e.reg.tag("example.com/stream:1", im.manifest)
	// The decompressor hands the unpacker 512 KiB at a time: stop the
	// body well past the first such chunk.
	f, reached, release := gated(l.desc.Size * 3 / 4)
	f.chunk = 32 << 10
	e.reg.setFault(l.desc.Digest, f)
	var log progressLog

	p := e.startPull(e.ctx, "example.com/stream:1", pull.WithProgress(log.record))
	defer func() { release(); <-p.done }()
	wait(t, "the layer's body to stop half way", reached)
	waitFor(t, "the first file in the extract snapshot while the body is stopped", func() bool {
		dir := e.extractDir(e.ctx)
		b, err := os.ReadFile(filepath.Join(dir, "first"))
		return dir != "" && err == nil && string(b) == "the first file"
	})
	if !log.has(l.desc.Digest, pull.StatusUnpacking) {
		t.Errorf("no %q progress for the layer while its body is stopped", pull.StatusUnpacking)
	}
	if log.has(l.desc.Digest, pull.StatusDone) {
		t.Errorf("the layer reported %q while its body is stopped", pull.StatusDone)
	}
	if _, err := e.db.ContentStore().Info(e.ctx, l.desc.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("Info of the half-downloaded layer: %v, want NotFound", err)
	}

	release()
	if err := p.wait(t); err != nil {
		t.Fatal(err)
	}
	tree := e.readTree(e.ctx, im.chain()[1])
	if tree["first"] != "the first file" || len(tree["big"]) != 4<<20 || tree["base"] != "base" {
		t.Errorf("unpacked tree has first=%q, %d bytes of big, base=%q", tree["first"], len(tree["big"]), tree["base"])
	}
	if !log.has(l.desc.Digest, pull.StatusDone) {
		t.Errorf("no %q progress for the layer", pull.StatusDone)
	}
	e.checkClean(e.ctx)
}

// TestPullConcurrency checks that layers download in parallel, up to the
// bound WithConcurrency sets.
func TestPullConcurrency(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprint("concurrency ", n), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			var layers []layer
			for i := range 5 {
				layers = append(layers, makeLayer(t, file(fmt.Sprint("f", i), randomText(uint64(i), 4<<10))))
			}
			im := e.reg.addImage(t, nil, layers...)
			e.reg.tag("example.com/five:1", im.manifest)
			f, _, release := gated(0)
			f.chunk, f.pause = 512, 1e6 // slow once released: 1 ms a chunk
			for _, l := range layers {
				e.reg.setFault(l.desc.Digest, f)
			}

			p := e.startPull(e.ctx, "example.com/five:1", pull.WithConcurrency(n))
			defer func() { release(); <-p.done }()
			waitFor(t, "bodies in flight", func() bool { now, _ := e.reg.activeBodies(); return now == n })
			release()
			if err := p.wait(t); err != nil {
				t.Fatal(err)
			}
			if _, maxActive := e.reg.activeBodies(); maxActive != n {
				t.Errorf("at most %d layer bodies were open at once, want %d", maxActive, n)
			}
			checkChain(t, e, e.ctx, im.chain())
			e.checkClean(e.ctx)
		})
	}
}

// sharedImages makes two images whose bottom layer is the same big one,
// and gates that layer half way.
func sharedImages(t *testing.T, e *env) (a, b image, release func(), reached <-chan struct{}) {
	big := makeLayer(t, file("big", randomText(7, 256<<10)))
	a = e.reg.addImage(t, nil, big, makeLayer(t, file("a", "a")))
	b = e.reg.addImage(t, nil, big, makeLayer(t, file("b", "b")))
	e.reg.tag("example.com/a:1", a.manifest)
	e.reg.tag("example.com/b:1", b.manifest)
	f, reached, release := gated(big.desc.Size / 2)
	e.reg.setFault(big.desc.Digest, f)
	return a, b, release, reached
}

// joined waits until a pull reported its second layer waiting: it has
// joined the download of its first.
func joined(t *testing.T, log *progressLog, im image) {
	t.Helper()
	waitFor(t, "the pull to join the shared download", func() bool {
		return log.has(im.layers[1].desc.Digest, pull.StatusWaiting)
	})
}

func TestPullSharesDownloads(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b, release, _ := sharedImages(t, e)
	var logA, logB progressLog
	pa := e.startPull(e.ctx, "example.com/a:1", pull.WithProgress(logA.record))
	pb := e.startPull(e.ctx, "example.com/b:1", pull.WithProgress(logB.record))
	defer func() { release(); <-pa.done; <-pb.done }()
	joined(t, &logA, a)
	joined(t, &logB, b)
	release()
	if err := errors.Join(pa.wait(t), pb.wait(t)); err != nil {
		t.Fatal(err)
	}
	if n := e.reg.count(a.layers[0].desc.Digest); n != 1 {
		t.Errorf("the shared layer was fetched %d times, want 1", n)
	}
	// Both pulls hear how the shared download went.
	for _, log := range []*progressLog{&logA, &logB} {
		if !log.has(a.layers[0].desc.Digest, pull.StatusDone) {
			t.Errorf("a pull had no %q report for the shared layer", pull.StatusDone)
		}
	}
	for _, im := range []image{a, b} {
		if _, err := e.sn().Stat(e.ctx, im.chain()[1]); err != nil {
			t.Errorf("top snapshot: %v", err)
		}
	}
	e.checkClean(e.ctx)
}

func TestPullSharesDownloadsAcrossNamespaces(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, _, release, _ := sharedImages(t, e)
	other := nsCtx("other")
	var logA, logB progressLog
	pa := e.startPull(e.ctx, "example.com/a:1", pull.WithProgress(logA.record))
	pb := e.startPull(other, "example.com/a:1", pull.WithProgress(logB.record))
	defer func() { release(); <-pa.done; <-pb.done }()
	joined(t, &logA, a)
	joined(t, &logB, a)
	release()
	if err := errors.Join(pa.wait(t), pb.wait(t)); err != nil {
		t.Fatal(err)
	}
	if n := e.reg.count(a.layers[0].desc.Digest); n != 1 {
		t.Errorf("the shared layer was fetched %d times, want 1", n)
	}
	for _, ctx := range []context.Context{e.ctx, other} {
		for _, d := range layerDigests(a) {
			if _, err := e.db.ContentStore().Info(ctx, d); err != nil {
				t.Errorf("Info(%s): %v", d, err)
			}
		}
		checkChain(t, e, ctx, a.chain())
		e.checkClean(ctx)
	}
	// Each namespace's image keeps the blobs on its own.
	if err := e.db.Images().Delete(e.ctx, "example.com/a:1"); err != nil {
		t.Fatal(err)
	}
	e.gc()
	for _, d := range layerDigests(a) {
		if _, err := e.db.ContentStore().Info(other, d); err != nil {
			t.Errorf("Info(%s) in the other namespace after GC: %v", d, err)
		}
	}
	checkChain(t, e, other, a.chain())
}

// TestPullSharedDownloadOutlivesItsStarter cancels the pull that started
// a shared download: the other pull must still get the layer.
func TestPullSharedDownloadOutlivesItsStarter(t *testing.T) {
	t.Parallel()
	for _, ns := range []string{"default", "other"} {
		t.Run("second pull in "+ns, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			a, b, release, reached := sharedImages(t, e)
			ctxA, cancelA := context.WithCancel(e.ctx)
			defer cancelA()
			ctxB := nsCtx(ns)
			var logA, logB progressLog
			pa := e.startPull(ctxA, "example.com/a:1", pull.WithProgress(logA.record))
			defer func() { release(); <-pa.done }()
			wait(t, "the shared layer to be half downloaded", reached)
			pb := e.startPull(ctxB, "example.com/b:1", pull.WithProgress(logB.record))
			defer func() { release(); <-pb.done }()
			joined(t, &logB, b)

			cancelA()
			if err := pa.wait(t); !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled pull: %v, want context.Canceled", err)
			}
			logA.close()
			// A collection now must not take what the surviving pull needs.
			e.gc()
			release()
			if err := pb.wait(t); err != nil {
				t.Fatalf("the pull sharing the cancelled one's download: %v", err)
			}
			if n := e.reg.count(a.layers[0].desc.Digest); n != 1 {
				t.Errorf("the shared layer was fetched %d times, want 1", n)
			}
			if late := logA.close(); len(late) > 0 {
				t.Errorf("the cancelled pull got progress after it returned: %v", late)
			}
			if !logB.has(a.layers[0].desc.Digest, pull.StatusDone) {
				t.Errorf("the surviving pull had no %q report for the shared layer", pull.StatusDone)
			}
			checkChain(t, e, ctxB, b.chain())
			e.checkClean(e.ctx)
			e.checkClean(ctxB)
			e.gc()
			checkChain(t, e, ctxB, b.chain())
			if _, err := e.db.ContentStore().Info(ctxB, a.layers[0].desc.Digest); err != nil {
				t.Errorf("shared layer after GC: %v", err)
			}
		})
	}
}

// TestPullRetryAfterCancel pulls again right after a cancelled pull, while
// its abandoned download may still be winding down.
func TestPullRetryAfterCancel(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, _, release, reached := sharedImages(t, e)
	for range 3 {
		ctx, cancel := context.WithCancel(e.ctx)
		p := e.startPull(ctx, "example.com/a:1")
		wait(t, "the layer to be half downloaded", reached)
		cancel()
		if err := p.wait(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled pull: %v", err)
		}
		e.checkClean(e.ctx)
	}
	release()
	e.pull("example.com/a:1")
	checkChain(t, e, e.ctx, a.chain())
	e.checkClean(e.ctx)
}

// TestPullSharedDownloadOutlivesFailedStarter fails the pull that started
// a shared download on another layer, and deletes its lease with it,
// while the download runs on for the other pull.
func TestPullSharedDownloadOutlivesFailedStarter(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	big := makeLayer(t, file("big", randomText(9, 256<<10)))
	bad := makeLayer(t, file("bad", "bad"))
	a := e.reg.addImage(t, nil, bad, big)
	b := e.reg.addImage(t, nil, big, makeLayer(t, file("b", "b")))
	e.reg.tag("example.com/a:1", a.manifest)
	e.reg.tag("example.com/b:1", b.manifest)
	fBig, reachedBig, releaseBig := gated(big.desc.Size / 2)
	e.reg.setFault(big.desc.Digest, fBig)
	fBad, _, releaseBad := gated(0)
	fBad.body = []byte(strings.Repeat("x", int(bad.desc.Size)))
	e.reg.setFault(bad.desc.Digest, fBad)

	pa := e.startPull(e.ctx, "example.com/a:1")
	defer func() { releaseBad(); releaseBig(); <-pa.done }()
	wait(t, "the shared layer to be half downloaded", reachedBig)
	var logB progressLog
	pb := e.startPull(nsCtx("other"), "example.com/b:1", pull.WithProgress(logB.record))
	defer func() { releaseBig(); <-pb.done }()
	joined(t, &logB, b)

	releaseBad()
	checkErrorNames(t, pa.wait(t), bad.desc.Digest.String())
	e.gc()
	releaseBig()
	if err := pb.wait(t); err != nil {
		t.Fatalf("the pull sharing the failed one's download: %v", err)
	}
	checkChain(t, e, nsCtx("other"), b.chain())
	e.checkClean(e.ctx)
	e.checkClean(nsCtx("other"))
}
