package registry

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/remotes"
	"github.com/berth-dev/berth/remotes/hosts"
)

// pusher uploads to one repository, on hosts with the push capability.
type pusher struct {
	c    *Client
	repo *repository
}

var _ remotes.Pusher = (*pusher)(nil)

// Push uploads desc from ra. Blobs: a HEAD first (present: done), then a
// cross-repository mount when WithMountFrom names sources, else an upload
// session with one PUT or, with WithChunkSize, PATCH chunks. Manifests: a
// PUT with their media type, by digest or (WithTag) by the tag.
func (p *pusher) Push(ctx context.Context, desc ocispec.Descriptor, ra io.ReaderAt, opts ...remotes.PushOpt) error {
	var o remotes.PushOpts
	for _, opt := range opts {
		opt(&o)
	}
	if err := desc.Digest.Validate(); err != nil || desc.Size < 0 {
		return fmt.Errorf("push %q (%d bytes): not a valid descriptor: %w", desc.Digest, desc.Size, errdefs.ErrInvalidArgument)
	}
	repo := *p.repo
	if !(o.Tag && isManifest(desc.MediaType) && repo.tag != "") {
		repo.name = repo.domain + "/" + repo.path + "@" + desc.Digest.String()
	}
	return p.c.eachHost(ctx, "push", &repo, hosts.CapPush, func(e endpoint) error {
		if isManifest(desc.MediaType) {
			return p.pushManifest(ctx, e, desc, ra, o.Tag)
		}
		return p.pushBlob(ctx, e, desc, ra, o.MountFrom)
	})
}

// pushManifest PUTs a manifest unless the registry has it under that name.
func (p *pusher) pushManifest(ctx context.Context, e endpoint, desc ocispec.Descriptor, ra io.ReaderAt, tag bool) error {
	object := desc.Digest.String()
	if tag && e.repo.tag != "" {
		object = e.repo.tag
	}
	scopes := []string{scope(e.repo.path, "pull,push")}
	u := e.url("manifests", object)
	resp, err := p.c.do(ctx, e, request{method: http.MethodHead, url: u, scopes: scopes,
		header: http.Header{"Accept": {desc.MediaType}}})
	if err != nil {
		return err
	}
	drain(resp)
	if resp.StatusCode == http.StatusOK && digest.Digest(resp.Header.Get("Docker-Content-Digest")) == desc.Digest {
		log.G(ctx).Debug("manifest already in the registry", "ref", e.repo.name, "object", object)
		return nil
	}
	resp, err = p.c.do(ctx, e, request{method: http.MethodPut, url: u, scopes: scopes,
		header: http.Header{"Content-Type": {desc.MediaType}},
		body:   sectionBody(ra, 0, desc.Size), size: desc.Size})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return responseError(resp, "manifest")
	}
	drain(resp)
	if got := digest.Digest(resp.Header.Get("Docker-Content-Digest")); got != "" && got != desc.Digest {
		return fmt.Errorf("manifest stored as %s, not %s: %w", got, desc.Digest, errdefs.ErrDataLoss)
	}
	return nil
}

// pushBlob uploads a blob the registry does not have yet.
func (p *pusher) pushBlob(ctx context.Context, e endpoint, desc ocispec.Descriptor, ra io.ReaderAt, mountFrom []string) error {
	scopes := []string{scope(e.repo.path, "pull,push")}
	for _, from := range mountFrom {
		scopes = append(scopes, scope(from, "pull"))
	}
	resp, err := p.c.do(ctx, e, request{method: http.MethodHead, url: e.url("blobs", desc.Digest.String()), scopes: scopes})
	if err != nil {
		return err
	}
	drain(resp)
	if resp.StatusCode == http.StatusOK {
		log.G(ctx).Debug("blob already in the registry", "ref", e.repo.name, "digest", desc.Digest)
		return nil
	}
	location, err := p.startUpload(ctx, e, desc, scopes, mountFrom)
	if err != nil || location == nil {
		return err // nil, nil: mounted
	}
	if p.c.opts.chunkSize > 0 && desc.Size > p.c.opts.chunkSize {
		return p.uploadChunks(ctx, e, desc, ra, location, scopes)
	}
	return p.finishUpload(ctx, e, desc, location, scopes, sectionBody(ra, 0, desc.Size), desc.Size)
}

// startUpload mounts the blob from one of mountFrom, or opens an upload
// session. It returns the session's location, nil when mounted.
func (p *pusher) startUpload(ctx context.Context, e endpoint, desc ocispec.Descriptor, scopes, mountFrom []string) (*url.URL, error) {
	base := e.url("blobs", "uploads") + "/"
	for _, from := range mountFrom {
		u, err := addQuery(base, "mount", desc.Digest.String(), "from", from)
		if err != nil {
			return nil, err
		}
		resp, err := p.c.do(ctx, e, request{method: http.MethodPost, url: u, scopes: scopes, body: emptyBody, size: 0})
		if err != nil {
			return nil, err
		}
		switch resp.StatusCode {
		case http.StatusCreated:
			drain(resp)
			log.G(ctx).Debug("blob mounted", "ref", e.repo.name, "digest", desc.Digest, "from", from)
			return nil, nil
		case http.StatusAccepted: // not mountable; the registry opened a session instead
			drain(resp)
			return location(resp)
		}
		log.G(ctx).Debug("blob mount refused", "from", from, "error", responseError(resp, "blob").Error())
	}
	resp, err := p.c.do(ctx, e, request{method: http.MethodPost, url: base, scopes: scopes, body: emptyBody, size: 0})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusAccepted {
		return nil, responseError(resp, "blob upload")
	}
	drain(resp)
	return location(resp)
}

// finishUpload PUTs the last (or only) bytes of the session with the
// digest, which commits the blob.
func (p *pusher) finishUpload(ctx context.Context, e endpoint, desc ocispec.Descriptor, loc *url.URL, scopes []string, body func() io.ReadCloser, size int64) error {
	u, err := addQuery(loc.String(), "digest", desc.Digest.String())
	if err != nil {
		return err
	}
	resp, err := p.c.do(ctx, e, request{method: http.MethodPut, url: u, scopes: scopes, body: body, size: size,
		header: http.Header{"Content-Type": {"application/octet-stream"}}})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return responseError(resp, "blob upload")
	}
	drain(resp)
	return nil
}

// location resolves a response's Location against its request.
func location(resp *http.Response) (*url.URL, error) {
	l := resp.Header.Get("Location")
	if l == "" {
		return nil, fmt.Errorf("upload answer %s without a Location: %w", resp.Status, errdefs.ErrUnknown)
	}
	u, err := resp.Request.URL.Parse(l)
	if err != nil {
		return nil, fmt.Errorf("upload Location %q: %v: %w", l, err, errdefs.ErrUnknown)
	}
	return u, nil
}

// addQuery adds key, value pairs to the query of raw.
func addQuery(raw string, kv ...string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("url %q: %v: %w", raw, err, errdefs.ErrInvalidArgument)
	}
	q := u.Query()
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// sectionBody opens [off, off+n) of ra anew for each attempt.
func sectionBody(ra io.ReaderAt, off, n int64) func() io.ReadCloser {
	return func() io.ReadCloser { return io.NopCloser(io.NewSectionReader(ra, off, n)) }
}

func emptyBody() io.ReadCloser { return http.NoBody }
