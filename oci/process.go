package oci

import (
	"context"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// lookupEnv reads the environment of the process building the spec, for
// WithEnv's bare "KEY" entries; tests replace it.
var lookupEnv = os.LookupEnv

// WithImageConfig applies what an image says about its process: Env merged
// by key over the spec's (the image's PATH replaces the default one),
// WorkingDir ("/" when the image sets none) and Entrypoint followed by Cmd
// as the args. The image's User is not resolved here: it needs the
// unpacked rootfs, so the caller passes it to ResolveUser and the result
// to WithUser.
func WithImageConfig(cfg ocispec.ImageConfig) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		p := ensureProcess(s)
		p.Env = mergeEnv(p.Env, cfg.Env)
		p.Cwd = "/"
		if cfg.WorkingDir != "" {
			if !path.IsAbs(cfg.WorkingDir) {
				return fmt.Errorf("image working directory %q is not an absolute path: %w", cfg.WorkingDir, errdefs.ErrInvalidArgument)
			}
			p.Cwd = path.Clean(cfg.WorkingDir)
		}
		p.Args = slices.Concat(cfg.Entrypoint, cfg.Cmd)
		return nil
	}
}

// WithProcessArgs replaces the args, entrypoint included. It fails on no
// args: runc refuses a process without them.
func WithProcessArgs(args ...string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if len(args) == 0 {
			return fmt.Errorf("process args: none given: %w", errdefs.ErrInvalidArgument)
		}
		ensureProcess(s).Args = slices.Clone(args)
		return nil
	}
}

// WithEntrypoint is docker's --entrypoint, applied after WithImageConfig:
// entrypoint replaces the image's, and the image's Cmd is dropped, so the
// args are entrypoint followed by cmd (the command line's arguments after
// the image name, if any). An empty entrypoint (--entrypoint "") leaves
// cmd alone as the args; with no cmd either there is nothing to run, an
// InvalidArgument error, as docker's "no command specified".
func WithEntrypoint(entrypoint []string, cmd []string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		ep := entrypoint
		if len(ep) == 1 && ep[0] == "" {
			ep = nil // docker's spelling of --entrypoint ""
		}
		args := slices.Concat(ep, cmd)
		if len(args) == 0 || args[0] == "" {
			return fmt.Errorf("entrypoint %q with command %q: no command to run: %w", entrypoint, cmd, errdefs.ErrInvalidArgument)
		}
		ensureProcess(s).Args = args
		return nil
	}
}

// WithEnv sets environment variables as docker's -e does: "KEY=VALUE"
// replaces any KEY already set; a bare "KEY" takes the value KEY has in the
// environment of the process calling GenerateSpec (the CLI's), and is
// skipped, leaving any image value, when KEY is not set there.
func WithEnv(env []string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		var add []string
		for _, e := range env {
			key, _, hasValue := strings.Cut(e, "=")
			if key == "" {
				return fmt.Errorf("environment variable %q: empty name: %w", e, errdefs.ErrInvalidArgument)
			}
			if !hasValue {
				v, ok := lookupEnv(key)
				if !ok {
					continue
				}
				e = key + "=" + v
			}
			add = append(add, e)
		}
		p := ensureProcess(s)
		p.Env = mergeEnv(p.Env, add)
		return nil
	}
}

// mergeEnv returns base with each entry of add replacing the entry of the
// same name, or appended when there is none.
func mergeEnv(base, add []string) []string {
	out := slices.Clone(base)
	for _, e := range add {
		key, _, _ := strings.Cut(e, "=")
		i := slices.IndexFunc(out, func(o string) bool {
			k, _, _ := strings.Cut(o, "=")
			return k == key
		})
		if i >= 0 {
			out[i] = e
		} else {
			out = append(out, e)
		}
	}
	return out
}

// WithCwd sets the working directory, which must be absolute.
func WithCwd(dir string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if !path.IsAbs(dir) {
			return fmt.Errorf("working directory %q is not an absolute path: %w", dir, errdefs.ErrInvalidArgument)
		}
		ensureProcess(s).Cwd = path.Clean(dir)
		return nil
	}
}

// WithTTY gives the process a terminal or not. With one, TERM is set to
// xterm unless already set, as docker does: programs such as top refuse to
// start without TERM.
func WithTTY(tty bool) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		p := ensureProcess(s)
		p.Terminal = tty
		if tty && !slices.ContainsFunc(p.Env, func(e string) bool { return strings.HasPrefix(e, "TERM=") }) {
			p.Env = append(p.Env, "TERM=xterm")
		}
		return nil
	}
}

// WithUser sets the user the process runs as, typically from ResolveUser.
func WithUser(u specs.User) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		u.AdditionalGids = slices.Clone(u.AdditionalGids)
		ensureProcess(s).User = u
		return nil
	}
}

// WithNoNewPrivileges sets no_new_privileges, which stops set-uid binaries
// and file capabilities from raising privileges. It is off by default, as
// docker has it.
func WithNoNewPrivileges(on bool) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		ensureProcess(s).NoNewPrivileges = on
		return nil
	}
}

// rlimits are the resource limits setrlimit(2) knows.
var rlimits = []string{
	"RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE",
	"RLIMIT_LOCKS", "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE",
	"RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_RSS", "RLIMIT_RTPRIO",
	"RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK",
}

// WithRlimit sets a resource limit, replacing any of the same type. typ is
// "RLIMIT_NOFILE" or docker's --ulimit name, "nofile". Note that raising a
// hard limit above the runtime's own needs CAP_SYS_RESOURCE, so runc fails
// on such a limit where the runtime lacks it.
func WithRlimit(typ string, hard, soft uint64) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		t := strings.ToUpper(typ)
		if !strings.HasPrefix(t, "RLIMIT_") {
			t = "RLIMIT_" + t
		}
		if !slices.Contains(rlimits, t) {
			return fmt.Errorf("rlimit %q: unknown type (known: %s): %w", typ, strings.Join(rlimits, ", "), errdefs.ErrInvalidArgument)
		}
		if soft > hard {
			return fmt.Errorf("rlimit %s: soft limit %d is above hard limit %d: %w", t, soft, hard, errdefs.ErrInvalidArgument)
		}
		p := ensureProcess(s)
		p.Rlimits = slices.DeleteFunc(p.Rlimits, func(r specs.POSIXRlimit) bool { return r.Type == t })
		p.Rlimits = append(p.Rlimits, specs.POSIXRlimit{Type: t, Hard: hard, Soft: soft})
		return nil
	}
}
