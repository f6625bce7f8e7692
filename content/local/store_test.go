package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/content"
)

func TestWriteCommitRead(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	dgst := commitBlob(t, s, "ref-1", "hello world")

	if got, want := readBlob(t, s, dgst), "hello world"; got != want {
		t.Errorf("blob content = %q, want %q", got, want)
	}
	ra, err := s.ReaderAt(ctx, ocispec.Descriptor{Digest: dgst})
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	if got, want := ra.Size(), int64(11); got != want {
		t.Errorf("ReaderAt.Size() = %d, want %d", got, want)
	}
	buf := make([]byte, 5)
	if n, err := ra.ReadAt(buf, 6); err != nil || string(buf[:n]) != "world" {
		t.Errorf("ReadAt(6) = %q, %v; want %q, nil", buf[:n], err, "world")
	}

	p, err := s.BlobPath(dgst)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p, filepath.Join(s.root, "blobs", "sha256", dgst.Encoded()); got != want {
		t.Errorf("BlobPath = %s, want %s", got, want)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode().Perm(), os.FileMode(0o444); got != want {
		t.Errorf("blob mode = %v, want %v", got, want)
	}
	if got := ingestEntries(t, s); len(got) != 0 {
		t.Errorf("ingest/ after commit = %v, want empty", got)
	}
	_, err = s.Status(ctx, "ref-1")
	wantErr(t, "Status after commit", err, errdefs.IsNotFound, `ingest ref "ref-1": not found`)
}

func TestInfoWalkUpdate(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a := commitBlob(t, s, "a", "aaa")
	b := commitBlob(t, s, "b", "bbbbb")

	info, err := s.Info(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if info.Digest != b || info.Size != 5 || info.CreatedAt.IsZero() || info.UpdatedAt.Before(info.CreatedAt) {
		t.Errorf("Info = %+v, want digest %s, size 5, CreatedAt <= UpdatedAt", info, b)
	}

	var got []digest.Digest
	err = s.Walk(ctx, func(i content.Info) error {
		got = append(got, i.Digest)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []digest.Digest{a, b}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Walk = %v, want %v", got, want)
	}
	if err := s.Walk(ctx, func(content.Info) error { return nil }, ""); err != nil {
		t.Errorf(`Walk with filter "": %v`, err)
	}
	err = s.Walk(ctx, func(content.Info) error { return nil }, "labels.x==y")
	wantErr(t, "Walk with filter", err, errdefs.IsInvalidArgument, `"labels.x==y"`)

	stop := errors.New("stop")
	if err := s.Walk(ctx, func(content.Info) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("Walk returning error = %v, want %v", err, stop)
	}

	_, err = s.Update(ctx, content.Info{Digest: a, Labels: map[string]string{"k": "v"}})
	wantErr(t, "Update", err, errdefs.IsNotImplemented, "keeps no labels")
	_, err = s.Update(ctx, content.Info{Digest: digest.FromString("missing")})
	wantErr(t, "Update missing", err, errdefs.IsNotFound, "not found")
}

func TestDelete(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	dgst := commitBlob(t, s, "ref", "data")

	if err := s.Delete(ctx, dgst); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantMsg := "content " + dgst.String() + ": not found"
	wantErr(t, "Delete again", s.Delete(ctx, dgst), errdefs.IsNotFound, wantMsg)
	_, err := s.ReaderAt(ctx, ocispec.Descriptor{Digest: dgst})
	wantErr(t, "ReaderAt deleted", err, errdefs.IsNotFound, wantMsg)
	_, err = s.Info(ctx, dgst)
	wantErr(t, "Info deleted", err, errdefs.IsNotFound, wantMsg)
	wantErr(t, "Delete bad digest", s.Delete(ctx, "sha256:nothex"), errdefs.IsInvalidArgument, "sha256:nothex")

	// Deleted content can be written again.
	commitBlob(t, s, "ref", "data")
}

func TestNewStoreRemovesStaleTemporaries(t *testing.T) {
	s := newStore(t)
	stale := filepath.Join(s.root, "ingest", tempPrefix+"stale")
	fresh := filepath.Join(s.root, "ingest", tempPrefix+"fresh")
	for _, dir := range []string{stale, fresh} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if err := s.WalkIngests(func(ref string) error {
		t.Errorf("WalkIngests reported %q, want no ingest", ref)
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	s2, err := NewStore(s.root)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ingestEntries(t, s2), []string{tempPrefix + "fresh"}; !slices.Equal(got, want) {
		t.Errorf("ingest/ after NewStore = %v, want %v", got, want)
	}
}
