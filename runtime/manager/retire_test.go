package manager

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/namespaces"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func newTestManager(t *testing.T, state, shimDir string) *Manager {
	t.Helper()
	m, err := New(context.Background(), Config{State: state, ShimDir: shimDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func mustCreate(t *testing.T, ctx context.Context, m *Manager, id string) *Task {
	t.Helper()
	task, err := m.Create(ctx, id, CreateOpts{Runtime: RuncRuntime, Spec: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	return task
}

// Delete answers once the shim deleted the task; the bundle leaves its
// place at once, and a Create of the same id right after gets a new shim,
// not the old one that is still shutting down. Then nothing is left.
func TestDeleteRetiresInBackground(t *testing.T) {
	state := t.TempDir()
	m := newTestManager(t, state, installFakeShim(t))
	ctx := namespaces.WithNamespace(context.Background(), "ns1")

	first := mustCreate(t, ctx, m, "c1")
	resp, err := m.Delete(ctx, "c1")
	if err != nil || resp.ExitStatus != 7 {
		t.Fatalf("Delete = %v, %v; want exit status 7", resp, err)
	}
	bundle := filepath.Join(state, "ns1", "c1")
	if _, err := os.Stat(bundle); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bundle still in place after Delete: %v", err)
	}
	if _, err := m.Get(ctx, "c1"); !errdefs.IsNotFound(err) {
		t.Errorf("Get after Delete: %v, want NotFound", err)
	}

	start := time.Now()
	second := mustCreate(t, ctx, m, "c1")
	if second.Pid == first.Pid {
		t.Fatalf("the second c1 got the first one's shim (pid %d), which was shutting down", first.Pid)
	}
	if waited := time.Since(start); waited < fakeStopDelay/2 {
		t.Errorf("Create did not wait for the old shim to stop (%s)", waited)
	}
	if _, err := m.Delete(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	_ = m.Close()
	checkNothingLeft(t, state, first.Pid, second.Pid)
}

// checkNothingLeft checks that no bundle, trashed bundle or shim is left.
func checkNothingLeft(t *testing.T, state string, shims ...uint32) {
	t.Helper()
	for _, dir := range []string{filepath.Join(state, "ns1"), filepath.Join(state, trashDir, "ns1")} {
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("%s holds %d entries, want none", dir, len(entries))
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range shims {
		for running(pid) {
			if time.Now().After(deadline) {
				t.Errorf("shim %d still runs", pid)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// running reports whether process pid exists and is not a zombie (the
// orphaned shims are reaped by whatever init the tests run under).
func running(pid uint32) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i > 0 && len(stat) > i+2 && stat[i+2] != 'Z'
}

// berthd killed in the middle of a background clean-up: the next one
// stops the shim of the bundle in the trash, unmounts what is mounted in
// it and removes it.
func TestTrashEmptiedAtStart(t *testing.T) {
	state, shimDir := t.TempDir(), installFakeShim(t)
	m := newTestManager(t, state, shimDir)
	ctx := namespaces.WithNamespace(context.Background(), "ns1")
	task := mustCreate(t, ctx, m, "c1")
	if _, err := task.Client().Delete(task.ShimContext(ctx), &taskapi.DeleteRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	// Killed right after the move: the shim still runs.
	trashed, err := m.moveToTrash(task)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(trashed, "rootfs")
	if os.Getuid() == 0 {
		if err := unix.Mount("tmpfs", rootfs, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = mount.UnmountAll(rootfs, unix.MNT_DETACH) })
		if err := os.WriteFile(filepath.Join(rootfs, "precious"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_ = task.client.Close()

	again := newTestManager(t, state, shimDir)
	if ts, _ := again.List(ctx); len(ts) != 0 {
		t.Errorf("a trashed task was restored: %v", ts)
	}
	if points, _ := mount.MountPointsUnder(state); len(points) != 0 {
		t.Errorf("mounts left: %q", points)
	}
	checkNothingLeft(t, state, task.Pid)
}

// berthd killed after the shim deleted the task but before the bundle
// was moved: the shim answers without the task; it is stopped and the
// bundle removed.
func TestDeletedTaskInPlaceCleanedAtStart(t *testing.T) {
	state, shimDir := t.TempDir(), installFakeShim(t)
	m := newTestManager(t, state, shimDir)
	ctx := namespaces.WithNamespace(context.Background(), "ns1")
	task := mustCreate(t, ctx, m, "c1")
	if _, err := task.Client().Delete(task.ShimContext(ctx), &taskapi.DeleteRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	_ = task.client.Close()

	again := newTestManager(t, state, shimDir)
	if ts, _ := again.List(ctx); len(ts) != 0 {
		t.Errorf("a deleted task was restored: %v", ts)
	}
	checkNothingLeft(t, state, task.Pid)
	// The id is free again.
	mustCreate(t, ctx, again, "c1")
	if _, err := again.Delete(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
}
