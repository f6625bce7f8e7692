package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-dev/berth/diff/apply"
	"github.com/berth-dev/berth/mount"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// phases are the stages of a berthd pull timed apart, in process, on the
// big image (-phases): what each would cost if it ran alone.
type phases struct {
	// Fetch: every layer over HTTP from the registry, 3 at a time (berthd's
	// default), into files on the work filesystem, hashed and fsynced as
	// the content store does.
	Fetch time.Duration `json:"fetch_ns"`
	// Unpack1 and Unpack2: berth's own unpacker (diff/apply.ApplyStream:
	// gzip readahead, tar apply, diff_id digest) from blobs in the page
	// cache, one layer at a time and two at a time, each layer into its own
	// directory as an overlay upperdir would be.
	Unpack1 time.Duration `json:"unpack_sequential_ns"`
	Unpack2 time.Duration `json:"unpack_two_at_a_time_ns"`
}

func (e *env) measurePhases(ctx context.Context, img *image, run int) (phases, error) {
	var p phases
	var err error
	if p.Fetch, err = e.timeLayers(ctx, img, "fetch", run, 3, nil, func(ctx context.Context, i int, dir string) error {
		return fetchLayer(ctx, e.reg, img, i, filepath.Join(dir, "data"))
	}); err != nil {
		return p, err
	}
	layout := e.layouts[img.Key]
	diffIDs, err := readDiffIDs(layout, img)
	if err != nil {
		return p, err
	}
	unpack := func(ctx context.Context, i int, dir string) error {
		return unpackLayer(ctx, blobPath(layout, img.Layers[i].Digest), dir, diffIDs[i])
	}
	var blobs []string
	for _, l := range img.Layers {
		blobs = append(blobs, blobPath(layout, l.Digest))
	}
	if p.Unpack1, err = e.timeLayers(ctx, img, "unpack1", run, 1, blobs, unpack); err != nil {
		return p, err
	}
	p.Unpack2, err = e.timeLayers(ctx, img, "unpack2", run, 2, blobs, unpack)
	return p, err
}

// fetchLayer downloads layer i of img into path, checks its digest and
// fsyncs it.
func fetchLayer(ctx context.Context, reg *registry, img *image, i int, path string) error {
	d := img.Layers[i]
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/v2/%s/blobs/%s", reg.host, img.Repo, d.Digest), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET blob %s: %s", d.Digest, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(io.MultiWriter(f, h), resp.Body, make([]byte, 1<<20)); err != nil {
		return err
	}
	if got := digest.NewDigest(digest.SHA256, h); got != d.Digest {
		return fmt.Errorf("blob %s arrived as %s", d.Digest, got)
	}
	return f.Sync()
}

// unpackLayer applies the blob at path into dir with berth's unpacker and
// checks the diff ID.
func unpackLayer(ctx context.Context, path, dir string, diffID digest.Digest) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	got, err := apply.ApplyStream(ctx, f, []mount.Mount{{Type: "bind", Source: dir, Options: []string{"rbind", "rw"}}})
	if err != nil {
		return err
	}
	if got.Digest != diffID {
		return fmt.Errorf("layer %s unpacked to %s, want %s", path, got.Digest, diffID)
	}
	return nil
}

// readDiffIDs reads the diff IDs from the config blob of img's layout.
func readDiffIDs(layout string, img *image) ([]digest.Digest, error) {
	b, err := os.ReadFile(blobPath(layout, img.Config.Digest))
	if err != nil {
		return nil, err
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("config of %s: %w", img.Key, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(img.Layers) {
		return nil, fmt.Errorf("config of %s: %d diff IDs for %d layers", img.Key, len(cfg.RootFS.DiffIDs), len(img.Layers))
	}
	return cfg.RootFS.DiffIDs, nil
}
