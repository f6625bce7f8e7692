package pull_test

import (
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestRefusedDocumentsNotStored pulls an index, a manifest or a config
// that verifies against its digest but that berth refuses: the pull fails
// naming it, and the document is not in the content store, not even for
// the collector to remove.
func TestRefusedDocumentsNotStored(t *testing.T) {
	t.Parallel()
	raw := func(e *env, mediaType string, b []byte) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: mediaType, Digest: e.reg.put(b), Size: int64(len(b))}
	}
	cases := []struct {
		name string
		// root returns what faultRef is tagged to, and the refused blob.
		root func(*testing.T, *env) (ocispec.Descriptor, digest.Digest)
		want string
	}{
		{"manifest not JSON", func(t *testing.T, e *env) (ocispec.Descriptor, digest.Digest) {
			d := raw(e, ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion": 2, "config": `))
			return d, d.Digest
		}, "malformed JSON"},
		{"manifest of schemaVersion 3", func(t *testing.T, e *env) (ocispec.Descriptor, digest.Digest) {
			d := raw(e, ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion": 3, "config": {}}`))
			return d, d.Digest
		}, "schemaVersion is 3"},
		{"index without manifests", func(t *testing.T, e *env) (ocispec.Descriptor, digest.Digest) {
			d := raw(e, ocispec.MediaTypeImageIndex, []byte(`{"schemaVersion": 2, "manifests": []}`))
			return d, d.Digest
		}, "not a valid index"},
		{"config not JSON", func(t *testing.T, e *env) (ocispec.Descriptor, digest.Digest) {
			im := e.reg.addImageWithConfig(t, []byte(`{"rootfs": `), threeLayers(t)...)
			return im.manifest, im.config.Digest
		}, "malformed JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			root, bad := tc.root(t, e)
			e.reg.tag(faultRef, root)
			_, err := e.puller.Pull(e.ctx, e.reg, faultRef)
			checkErrorNames(t, err, bad.String(), tc.want)
			if _, err := e.backend.Info(e.ctx, bad); !errdefs.IsNotFound(err) {
				t.Errorf("content store Info of the refused %s: %v, want NotFound", bad, err)
			}
			e.checkClean(e.ctx)
		})
	}
}
