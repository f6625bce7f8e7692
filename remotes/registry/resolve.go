package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/remotes/hosts"
)

// Media types of manifests berth reads.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerSchema1      = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeDockerSchema1JWS   = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// maxManifestSize bounds a manifest read into memory (distribution's own
// limit is 4 MiB).
const maxManifestSize = 4 << 20

// manifestAccept is the Accept header of manifest requests: the types
// berth understands, preferring an index.
var manifestAccept = strings.Join([]string{
	ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest,
	mediaTypeDockerManifestList, mediaTypeDockerManifest,
}, ", ")

// isManifest reports media types served by the manifests endpoint.
func isManifest(mt string) bool {
	switch mt {
	case ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest,
		mediaTypeDockerManifestList, mediaTypeDockerManifest,
		mediaTypeDockerSchema1, mediaTypeDockerSchema1JWS:
		return true
	}
	return false
}

// schema1Error refuses a Docker schema 1 manifest, for good: no other
// host is asked.
func schema1Error(mt string) error {
	return finalError{fmt.Errorf("the manifest is Docker schema 1 (%s), which berth does not support: "+
		"rebuild the image, or pull it with a recent docker and push it again, to get a schema 2 or OCI manifest: %w",
		mt, errdefs.ErrNotImplemented)}
}

// Resolve returns the normalized name of ref and the descriptor of its
// root manifest or index. A tag is resolved only by hosts with the
// resolve capability; a digest, being verifiable, by any pull host.
func (c *Client) Resolve(ctx context.Context, ref string) (string, ocispec.Descriptor, error) {
	repo, err := parseRef(ref)
	if err != nil {
		return "", ocispec.Descriptor{}, err
	}
	caps := hosts.CapPull | hosts.CapResolve
	if repo.dgst != "" {
		caps = hosts.CapPull
	}
	var desc ocispec.Descriptor
	err = c.eachHost(ctx, "resolve", repo, caps, func(e endpoint) error {
		d, err := c.resolveOn(ctx, e)
		desc = d
		return err
	})
	if err != nil {
		return "", ocispec.Descriptor{}, err
	}
	return repo.name, desc, nil
}

// resolveOn asks one host with HEAD, and with GET when HEAD is refused or
// does not give type, digest and size.
func (c *Client) resolveOn(ctx context.Context, e endpoint) (ocispec.Descriptor, error) {
	req := request{
		method: http.MethodHead,
		url:    e.url("manifests", e.repo.object()),
		header: http.Header{"Accept": {manifestAccept}},
		scopes: []string{scope(e.repo.path, "pull")},
	}
	resp, err := c.do(ctx, e, req)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound || retryableStatus(resp.StatusCode):
		return ocispec.Descriptor{}, responseError(resp, "manifest")
	case resp.StatusCode != http.StatusOK:
		drain(resp)
		return c.resolveGET(ctx, e, req) // GET works, or tells why (HEAD has no body)
	}
	drain(resp)
	mt := contentType(resp)
	if mt == mediaTypeDockerSchema1 || mt == mediaTypeDockerSchema1JWS {
		return ocispec.Descriptor{}, schema1Error(mt)
	}
	dgst := e.repo.dgst
	if h := digest.Digest(resp.Header.Get("Docker-Content-Digest")); dgst == "" && h.Validate() == nil {
		dgst = h
	}
	if dgst == "" || resp.ContentLength < 0 || !isManifest(mt) {
		return c.resolveGET(ctx, e, req)
	}
	return ocispec.Descriptor{MediaType: mt, Digest: dgst, Size: resp.ContentLength}, nil
}

// resolveGET reads the manifest and describes it from its bytes.
func (c *Client) resolveGET(ctx context.Context, e endpoint, req request) (ocispec.Descriptor, error) {
	req.method = http.MethodGet
	resp, err := c.do(ctx, e, req)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return ocispec.Descriptor{}, responseError(resp, "manifest")
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestSize+1))
	if err != nil {
		return ocispec.Descriptor{}, transportError{err}
	}
	if len(body) > maxManifestSize {
		return ocispec.Descriptor{}, fmt.Errorf("manifest larger than %d bytes: %w", maxManifestSize, errdefs.ErrInvalidArgument)
	}
	mt, err := manifestType(contentType(resp), body)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	algo := digest.Canonical
	if e.repo.dgst != "" {
		algo = e.repo.dgst.Algorithm()
	}
	if !algo.Available() {
		return ocispec.Descriptor{}, fmt.Errorf("digest algorithm %q: %w", algo, errdefs.ErrNotImplemented)
	}
	dgst := algo.FromBytes(body)
	if e.repo.dgst != "" && dgst != e.repo.dgst {
		return ocispec.Descriptor{}, fmt.Errorf("manifest has digest %s, not the %s asked for: %w", dgst, e.repo.dgst, errdefs.ErrDataLoss)
	}
	if h := digest.Digest(resp.Header.Get("Docker-Content-Digest")); h != "" && h.Algorithm() == algo && h != dgst {
		return ocispec.Descriptor{}, fmt.Errorf("manifest has digest %s, the registry says %s: %w", dgst, h, errdefs.ErrDataLoss)
	}
	return ocispec.Descriptor{MediaType: mt, Digest: dgst, Size: int64(len(body))}, nil
}

// contentType is the response's media type without parameters.
func contentType(resp *http.Response) string {
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return mt
}

// manifestType decides a manifest's media type: the Content-Type when it
// is a manifest type, else what the document says about itself.
func manifestType(ct string, body []byte) (string, error) {
	if ct == mediaTypeDockerSchema1 || ct == mediaTypeDockerSchema1JWS {
		return "", schema1Error(ct)
	}
	var doc struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		Manifests     json.RawMessage   `json:"manifests"`
		Config        json.RawMessage   `json:"config"`
		Layers        json.RawMessage   `json:"layers"`
		FSLayers      []json.RawMessage `json:"fsLayers"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("manifest is not JSON: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	switch {
	case doc.SchemaVersion == 1 || doc.FSLayers != nil:
		return "", schema1Error("schemaVersion 1")
	case doc.MediaType == mediaTypeDockerSchema1 || doc.MediaType == mediaTypeDockerSchema1JWS:
		return "", schema1Error(doc.MediaType)
	case isManifest(ct):
		return ct, nil
	case isManifest(doc.MediaType):
		return doc.MediaType, nil
	case doc.Manifests != nil:
		return ocispec.MediaTypeImageIndex, nil
	case doc.Config != nil:
		return ocispec.MediaTypeImageManifest, nil
	}
	return "", fmt.Errorf("manifest of unknown type (Content-Type %q): %w", ct, errdefs.ErrNotImplemented)
}
