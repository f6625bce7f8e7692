package pull

import (
	"encoding/json"
	"testing"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// FuzzDocuments feeds arbitrary bytes to the checks a pull runs on the
// manifests and indexes a registry sends: they must refuse or accept, never
// panic, and an accepted manifest's layers must all have valid digests.
func FuzzDocuments(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + digest.FromString("c").Encoded() + `","size":1},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:` + digest.FromString("l").Encoded() + `","size":1}]}`))
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:` + digest.FromString("m").Encoded() + `","size":3,"platform":{"os":"linux","architecture":"amd64"}}]}`))
	f.Add([]byte(`{"schemaVersion":1}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, b []byte) {
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(b), Size: int64(len(b))}
		var m ocispec.Manifest
		if json.Unmarshal(b, &m) == nil && validateManifest(desc, &m) == nil {
			for _, l := range m.Layers {
				if l.Digest.Validate() != nil {
					t.Fatalf("accepted a manifest with layer digest %q", l.Digest)
				}
			}
			_ = checkLayerTypes(desc, m.Layers)
		}
		var idx ocispec.Index
		if json.Unmarshal(b, &idx) == nil {
			_ = bestManifests(idx.Manifests, []ocispec.Platform{platforms.DefaultSpec()})
		}
	})
}

func TestBestManifestsTakesUnnamedPlatform(t *testing.T) {
	amd64 := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm64 := ocispec.Platform{OS: "linux", Architecture: "arm64"}
	named := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("named"), Platform: &arm64}
	unnamed := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("unnamed")}
	got := bestManifests([]ocispec.Descriptor{named, unnamed}, []ocispec.Platform{amd64})
	if len(got) != 1 || got[0].Digest != unnamed.Digest {
		t.Fatalf("amd64 from [arm64, unnamed]: got %v, want the unnamed manifest", got)
	}
	got = bestManifests([]ocispec.Descriptor{unnamed, named}, []ocispec.Platform{arm64})
	if len(got) != 1 || got[0].Digest != named.Digest {
		t.Fatalf("arm64 from [unnamed, arm64]: got %v, want the arm64 manifest", got)
	}
}
