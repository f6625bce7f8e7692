package registry

import (
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// repository is a parsed reference: where the registry is, which
// repository, and which object (tag or digest) in it.
type repository struct {
	// name is the normalized reference: "docker.io/library/busybox:1.36".
	name string
	// domain is the registry host namespace: "docker.io", "host:5000".
	domain string
	// path is the repository within the registry: "library/busybox".
	path string
	// tag is "" for a reference by digest only; dgst "" for a tag only.
	tag  string
	dgst digest.Digest
}

// parseRef parses ref the way docker and containerd do: "busybox" is
// docker.io/library/busybox:latest; a digest wins over a tag for what is
// fetched, and the tag is kept for pushing.
func parseRef(ref string) (*repository, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil, fmt.Errorf("reference %q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	named = reference.TagNameOnly(named)
	r := &repository{
		name:   named.String(),
		domain: reference.Domain(named),
		path:   reference.Path(named),
	}
	if t, ok := named.(reference.Tagged); ok {
		r.tag = t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		r.dgst = d.Digest()
		if err := r.dgst.Validate(); err != nil {
			return nil, fmt.Errorf("reference %q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
		}
	}
	return r, nil
}

// object is what the reference points at in the manifests endpoint: the
// digest when there is one, else the tag.
func (r *repository) object() string {
	if r.dgst != "" {
		return r.dgst.String()
	}
	return r.tag
}

// scope is the distribution token scope for actions ("pull",
// "pull,push") on repository path.
func scope(path, actions string) string {
	return "repository:" + path + ":" + actions
}
