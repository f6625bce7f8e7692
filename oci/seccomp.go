package oci

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/containerd/errdefs"
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A seccompSource computes a seccomp profile for a finished spec: the
// profile's capability-conditional rules depend on the spec's bounding set.
type seccompSource func(s *specs.Spec) (*specs.LinuxSeccomp, error)

// defaultSeccomp is docker's default profile, moby's, for the running
// architecture: errno for every syscall but those listed.
func defaultSeccomp(s *specs.Spec) (*specs.LinuxSeccomp, error) {
	p, err := seccomp.GetDefaultProfile(capabilityView(s))
	if err != nil {
		return nil, fmt.Errorf("default seccomp profile: %w", err)
	}
	return p, nil
}

// capabilityView is s, or a spec without capabilities when s has no
// capability section: moby's converter reads the bounding set without
// checking for one.
func capabilityView(s *specs.Spec) *specs.Spec {
	if s.Process != nil && s.Process.Capabilities != nil {
		return s
	}
	return &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}
}

// setSeccomp records src as the profile of the spec GenerateSpec is
// building, to be computed once all options have run; on a spec of its
// own, it computes the profile now. A nil src is unconfined.
func setSeccomp(ctx context.Context, s *specs.Spec, src seccompSource) error {
	if g := generationFrom(ctx); g != nil {
		g.seccomp = src
		return nil
	}
	return applySeccomp(s, src)
}

func applySeccomp(s *specs.Spec, src seccompSource) error {
	if src == nil {
		if s.Linux != nil {
			s.Linux.Seccomp = nil
		}
		return nil
	}
	p, err := src(s)
	if err != nil {
		return err
	}
	ensureLinux(s).Seccomp = p
	return nil
}

// WithSeccompUnconfined runs the container without a seccomp filter.
func WithSeccompUnconfined() SpecOpt {
	return func(ctx context.Context, s *specs.Spec) error {
		return setSeccomp(ctx, s, nil)
	}
}

// WithSeccompProfile replaces the default profile with the one in file,
// in docker's JSON format (docker's --security-opt seccomp=file): the
// format of moby's default.json, whose conditional rules (capabilities,
// architectures, kernel versions) are decided as for the default one. A
// file that cannot be read or decoded fails here, naming the file; so does
// one with neither a default action nor rules, which docker would take as
// unconfined: WithSeccompUnconfined says that plainly.
func WithSeccompProfile(file string) SpecOpt {
	return func(ctx context.Context, s *specs.Spec) error {
		body, err := os.ReadFile(file)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("seccomp profile %q: no such file: %w", file, errdefs.ErrNotFound)
		} else if err != nil {
			return fmt.Errorf("seccomp profile %q: %w", file, err)
		}
		src := func(s *specs.Spec) (*specs.LinuxSeccomp, error) {
			p, err := seccomp.LoadProfile(string(body), capabilityView(s))
			if err != nil {
				return nil, fmt.Errorf("seccomp profile %q: %v: %w", file, err, errdefs.ErrInvalidArgument)
			}
			if p == nil {
				return nil, fmt.Errorf("seccomp profile %q: neither a defaultAction nor syscall rules: %w", file, errdefs.ErrInvalidArgument)
			}
			return p, nil
		}
		// Decode now, so that a broken file fails at the option naming it.
		if _, err := src(s); err != nil {
			return err
		}
		return setSeccomp(ctx, s, src)
	}
}
