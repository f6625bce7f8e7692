package oci

import (
	"context"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestWithImageConfig(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      ocispec.ImageConfig
		wantArgs []string
		wantEnv  []string
		wantCwd  string
	}{{
		name:     "empty image",
		wantArgs: nil,
		wantEnv:  []string{"PATH=" + DefaultPath},
		wantCwd:  "/",
	}, {
		name: "entrypoint, cmd, env by key, workdir",
		cfg: ocispec.ImageConfig{
			Entrypoint: []string{"/entry", "-x"},
			Cmd:        []string{"serve", "--port=80"},
			Env:        []string{"PATH=/opt/bin:/bin", "LANG=C.UTF-8", "EMPTY="},
			WorkingDir: "/srv/app/",
			User:       "nobody", // not resolved here
		},
		wantArgs: []string{"/entry", "-x", "serve", "--port=80"},
		wantEnv:  []string{"PATH=/opt/bin:/bin", "LANG=C.UTF-8", "EMPTY="},
		wantCwd:  "/srv/app",
	}, {
		name:     "cmd only",
		cfg:      ocispec.ImageConfig{Cmd: []string{"sh"}},
		wantArgs: []string{"sh"},
		wantEnv:  []string{"PATH=" + DefaultPath},
		wantCwd:  "/",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s := generate(t, WithImageConfig(tc.cfg))
			got := []any{s.Process.Args, s.Process.Env, s.Process.Cwd, s.Process.User}
			want := []any{tc.wantArgs, tc.wantEnv, tc.wantCwd, specs.User{}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("args, env, cwd, user (-want +got):\n%s", diff)
			}
		})
	}
	_, err := GenerateSpec(context.Background(), "default", "c1", WithImageConfig(ocispec.ImageConfig{WorkingDir: "app"}))
	wantErr(t, err, errdefs.ErrInvalidArgument, `"app"`)
}

// WithEntrypoint follows docker run [--entrypoint E] image [cmd...].
func TestWithEntrypoint(t *testing.T) {
	image := ocispec.ImageConfig{Entrypoint: []string{"/docker-entrypoint.sh"}, Cmd: []string{"nginx", "-g", "daemon off;"}}
	for _, tc := range []struct {
		name            string
		entrypoint, cmd []string
		want            []string
		wantErr         bool
	}{
		{name: "entrypoint replaces the image's and drops its cmd", entrypoint: []string{"sh"}, want: []string{"sh"}},
		{name: "entrypoint with the user's cmd", entrypoint: []string{"sh"}, cmd: []string{"-c", "id"}, want: []string{"sh", "-c", "id"}},
		{name: "entrypoint of several words", entrypoint: []string{"env", "-i"}, cmd: []string{"sh"}, want: []string{"env", "-i", "sh"}},
		{name: `--entrypoint "" with a cmd`, entrypoint: []string{""}, cmd: []string{"ls", "/"}, want: []string{"ls", "/"}},
		{name: "empty entrypoint with a cmd", entrypoint: nil, cmd: []string{"ls"}, want: []string{"ls"}},
		{name: `--entrypoint "" and no cmd`, entrypoint: []string{""}, wantErr: true},
		{name: "nothing at all", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := GenerateSpec(context.Background(), "default", "c1", WithImageConfig(image), WithEntrypoint(tc.entrypoint, tc.cmd))
			if tc.wantErr {
				wantErr(t, err, errdefs.ErrInvalidArgument, "no command to run")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, s.Process.Args); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWithProcessArgs(t *testing.T) {
	args := []string{"sh", "-c", "true"}
	s := generate(t, WithImageConfig(ocispec.ImageConfig{Entrypoint: []string{"/e"}, Cmd: []string{"c"}}), WithProcessArgs(args...))
	args[0] = "changed"
	if diff := cmp.Diff([]string{"sh", "-c", "true"}, s.Process.Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	_, err := GenerateSpec(context.Background(), "default", "c1", WithProcessArgs())
	wantErr(t, err, errdefs.ErrInvalidArgument, "none given")
}

func TestWithEnv(t *testing.T) {
	orig := lookupEnv
	t.Cleanup(func() { lookupEnv = orig })
	lookupEnv = func(key string) (string, bool) {
		v, ok := map[string]string{"FROM_CLI": "cli value", "EMPTY_IN_CLI": ""}[key]
		return v, ok
	}
	s := generate(t,
		WithImageConfig(ocispec.ImageConfig{Env: []string{"LANG=C", "KEEP=image", "UNSET_IN_CLI=image"}}),
		WithEnv([]string{"LANG=en_US.UTF-8", "NEW=a=b", "FROM_CLI", "EMPTY_IN_CLI", "UNSET_IN_CLI", "LANG=last"}))
	want := []string{"PATH=" + DefaultPath, "LANG=last", "KEEP=image", "UNSET_IN_CLI=image", "NEW=a=b", "FROM_CLI=cli value", "EMPTY_IN_CLI="}
	if diff := cmp.Diff(want, s.Process.Env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	_, err := GenerateSpec(context.Background(), "default", "c1", WithEnv([]string{"=value"}))
	wantErr(t, err, errdefs.ErrInvalidArgument, `"=value"`, "empty name")
}

func TestWithTTY(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []SpecOpt
		wantEnv []string
		wantTTY bool
	}{
		{"tty sets TERM", []SpecOpt{WithTTY(true)}, []string{"PATH=" + DefaultPath, "TERM=xterm"}, true},
		{"tty keeps a TERM", []SpecOpt{WithEnv([]string{"TERM=vt100"}), WithTTY(true)}, []string{"PATH=" + DefaultPath, "TERM=vt100"}, true},
		{"no tty, no TERM", []SpecOpt{WithTTY(false)}, []string{"PATH=" + DefaultPath}, false},
	} {
		s := generate(t, tc.opts...)
		if diff := cmp.Diff(tc.wantEnv, s.Process.Env); diff != "" || s.Process.Terminal != tc.wantTTY {
			t.Errorf("%s: terminal %v, env (-want +got):\n%s", tc.name, s.Process.Terminal, diff)
		}
	}
}

func TestProcessOptions(t *testing.T) {
	gids := []uint32{10, 20}
	s := generate(t,
		WithCwd("/work/./dir/"),
		WithUser(specs.User{UID: 1000, GID: 1000, AdditionalGids: gids}),
		WithNoNewPrivileges(true),
		WithRlimit("nofile", 4096, 2048),
		WithRlimit("RLIMIT_NPROC", 100, 100))
	gids[0] = 99
	want := &specs.Process{
		Env:             []string{"PATH=" + DefaultPath},
		Cwd:             "/work/dir",
		User:            specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10, 20}},
		NoNewPrivileges: true,
		Capabilities:    s.Process.Capabilities,
		Rlimits: []specs.POSIXRlimit{
			{Type: "RLIMIT_NOFILE", Hard: 4096, Soft: 2048},
			{Type: "RLIMIT_NPROC", Hard: 100, Soft: 100},
		},
	}
	if diff := cmp.Diff(want, s.Process); diff != "" {
		t.Errorf("process (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		opt  SpecOpt
		says string
	}{
		{WithCwd("work"), `"work"`},
		{WithRlimit("nofiles", 1, 1), `"nofiles"`},
		{WithRlimit("core", 1, 2), "soft limit 2 is above hard limit 1"},
	} {
		_, err := GenerateSpec(context.Background(), "default", "c1", tc.opt)
		wantErr(t, err, errdefs.ErrInvalidArgument, tc.says)
	}
}
