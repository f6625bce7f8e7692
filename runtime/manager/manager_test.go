package manager

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/namespaces"
	"github.com/containerd/errdefs"
)

func TestShimBinary(t *testing.T) {
	dir := t.TempDir()
	path := t.TempDir()
	t.Setenv("PATH", path)
	for _, name := range []string{"containerd-shim-runsc-v1", "berth-shim-runc-v2"} {
		if err := os.WriteFile(filepath.Join(path, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m := &Manager{cfg: Config{ShimDir: dir}}
	for _, tc := range []struct {
		runtime, want string
		err           error
	}{
		{RuncRuntime, filepath.Join(path, "berth-shim-runc-v2"), nil}, // PATH when not next to berthd
		{"io.containerd.runsc.v1", filepath.Join(path, "containerd-shim-runsc-v1"), nil},
		{"io.containerd.kata.v2", "", errdefs.ErrNotFound},
		{"runc", "", errdefs.ErrInvalidArgument},
		{"io.containerd..v2", "", errdefs.ErrInvalidArgument},
	} {
		got, err := m.shimBinary(tc.runtime)
		if got != tc.want || !errors.Is(err, tc.err) && (err != nil || tc.err != nil) {
			t.Errorf("shimBinary(%q) = %q, %v; want %q, %v", tc.runtime, got, err, tc.want, tc.err)
		}
	}
	// Next to berthd wins over PATH.
	own := filepath.Join(dir, "berth-shim-runc-v2")
	if err := os.WriteFile(own, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := m.shimBinary(RuncRuntime); got != own || err != nil {
		t.Errorf("shimBinary(runc) = %q, %v; want %q", got, err, own)
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
