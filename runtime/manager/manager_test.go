package manager

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/runtime/handler"

	"github.com/berth-dev/berth/namespaces"
	"github.com/containerd/errdefs"
)

func TestShimBinary(t *testing.T) {
	dir := t.TempDir()
	path := t.TempDir()
	t.Setenv("PATH", path)
	for _, name := range []string{"containerd-shim-runsc-v1", "berth-shim-runc-v2", "containerd-shim-runc-v2"} {
		if err := os.WriteFile(filepath.Join(path, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	table, err := handler.New(handler.Config{Runtimes: map[string]*handler.Handler{
		"external": {RuntimeType: RuncRuntime, RuntimePath: filepath.Join(path, "containerd-shim-runc-v2")},
		"missing":  {RuntimeType: RuncRuntime, RuntimePath: "/nonexistent/shim"},
		"kata":     {RuntimeType: "io.containerd.kata.v2"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	m := &Manager{cfg: Config{ShimDir: dir, Handlers: table}}
	for _, tc := range []struct {
		runtime, want string
		own           bool
		err           error
		msg           string
	}{
		{RuncRuntime, filepath.Join(path, "berth-shim-runc-v2"), true, nil, ""}, // PATH when not next to berthd
		{"", filepath.Join(path, "berth-shim-runc-v2"), true, nil, ""},
		{"crun", filepath.Join(path, "berth-shim-runc-v2"), true, nil, ""},
		{"io.containerd.runsc.v1", filepath.Join(path, "containerd-shim-runsc-v1"), false, nil, ""},
		{"external", filepath.Join(path, "containerd-shim-runc-v2"), false, nil, ""},
		{"missing", "", false, errdefs.ErrNotFound, "/nonexistent/shim"},
		{"kata", "", false, errdefs.ErrNotFound, "containerd-shim-kata-v2 not found in PATH (" + path + ")"},
		{"io.containerd.kata.v2", "", false, errdefs.ErrNotFound, "containerd-shim-kata-v2"},
		{"nosuch", "", false, errdefs.ErrNotFound, "configured handlers: crun, external, kata, missing, runc, runsc"},
		{"io.containerd..v2", "", false, errdefs.ErrInvalidArgument, ""},
	} {
		var got string
		var own bool
		h, err := table.Lookup(tc.runtime)
		if err == nil {
			got, own, err = m.shimBinary(h)
		}
		if got != tc.want || own != tc.own || !errors.Is(err, tc.err) && (err != nil || tc.err != nil) ||
			err != nil && !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("shimBinary(%q) = %q, %v, %v; want %q, %v, %v containing %q", tc.runtime, got, own, err, tc.want, tc.own, tc.err, tc.msg)
		}
	}
	// Next to berthd wins over PATH; without gVisor's shim, runsc is ours.
	own := filepath.Join(dir, "berth-shim-runc-v2")
	if err := os.WriteFile(own, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(path, "containerd-shim-runsc-v1")); err != nil {
		t.Fatal(err)
	}
	for _, rt := range []string{RuncRuntime, "runsc"} {
		h, _ := table.Lookup(rt)
		if got, isOwn, err := m.shimBinary(h); got != own || !isOwn || err != nil {
			t.Errorf("shimBinary(%s) = %q, %v, %v; want %q", rt, got, isOwn, err, own)
		}
	}
}

// A shim that fails to start leaves no bundle and no task behind, and
// the id can be used again.
func TestCreateFailureCleansUp(t *testing.T) {
	state, bin := t.TempDir(), t.TempDir()
	shim := filepath.Join(bin, "berth-shim-runc-v2")
	if err := os.WriteFile(shim, []byte("#!/bin/sh\necho broken >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := New(context.Background(), Config{State: state, ShimDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	ctx := namespaces.WithNamespace(context.Background(), "ns1")
	for range 2 {
		_, err := m.Create(ctx, "c1", CreateOpts{Runtime: RuncRuntime, Spec: []byte("{}")})
		if err == nil {
			t.Fatal("Create with a broken shim succeeded")
		}
		if _, err := os.Stat(filepath.Join(state, "ns1", "c1")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("bundle left behind: %v", err)
		}
		if _, err := m.Get(ctx, "c1"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("Get after failed Create: %v, want NotFound", err)
		}
	}
}
