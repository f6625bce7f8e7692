package main

import (
	"context"
	"slices"
	"testing"

	eventstypes "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A container that outgrows its memory limit is killed by the kernel: the
// shim publishes /tasks/oom, before the exit (status 137) it caused.
func TestOOM(t *testing.T) {
	// The shell doubles a string until the 16 MiB limit stops it; the
	// shell itself, the container's init, is the biggest process.
	spec := testSpec("oom", []string{"sh", "-c", "x=a; while :; do x=$x$x; done"}, false)
	limit := int64(16 << 20)
	spec.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	tk := newTaskSpec(t, spec)
	tk.create(t, "", "")
	ctx := context.Background()
	if _, err := tk.shim.Start(ctx, &taskapi.StartRequest{ID: tk.id}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if w := wait(t, tk, ""); w.ExitStatus != 137 {
		t.Errorf("Wait = %d, want 137 (killed)", w.ExitStatus)
	}
	oom := tk.events.event(t, "/tasks/oom").(*eventstypes.TaskOOM)
	if oom.ContainerID != tk.id {
		t.Errorf("/tasks/oom = %v, want container %q", oom, tk.id)
	}
	if _, err := tk.shim.Delete(ctx, &taskapi.DeleteRequest{ID: tk.id}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	want := []string{"/tasks/create", "/tasks/start", "/tasks/oom", "/tasks/exit", "/tasks/delete"}
	if got := tk.events.waitTopics(want); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

// The OOM kill of a process other than init is published too; the
// container goes on.
func TestOOMOfChild(t *testing.T) {
	spec := testSpec("oomchild", []string{"sh", "-c", `sh -c 'x=a; while :; do x=$x$x; done'; exit 7`}, false)
	limit := int64(16 << 20)
	spec.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	tk := newTaskSpec(t, spec)
	tk.create(t, "", "")
	ctx := context.Background()
	if _, err := tk.shim.Start(ctx, &taskapi.StartRequest{ID: tk.id}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if w := wait(t, tk, ""); w.ExitStatus != 7 {
		t.Errorf("Wait = %d, want 7 (the init outlived its child)", w.ExitStatus)
	}
	if oom := tk.events.event(t, "/tasks/oom").(*eventstypes.TaskOOM); oom.ContainerID != tk.id {
		t.Errorf("/tasks/oom = %v, want container %q", oom, tk.id)
	}
	if _, err := tk.shim.Delete(ctx, &taskapi.DeleteRequest{ID: tk.id}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

// A container within its limit sees no /tasks/oom.
func TestNoOOM(t *testing.T) {
	spec := testSpec("fits", []string{"true"}, false)
	limit := int64(64 << 20)
	spec.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	tk := newTaskSpec(t, spec)
	tk.create(t, "", "")
	ctx := context.Background()
	if _, err := tk.shim.Start(ctx, &taskapi.StartRequest{ID: tk.id}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if w := wait(t, tk, ""); w.ExitStatus != 0 {
		t.Errorf("Wait = %d, want 0", w.ExitStatus)
	}
	if _, err := tk.shim.Delete(ctx, &taskapi.DeleteRequest{ID: tk.id}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	want := []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"}
	if got := tk.events.waitTopics(want); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}
