package shim

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	runc "github.com/containerd/go-runc"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Cleanup is the `delete` subcommand: the daemon runs it when the shim of
// task id is gone (killed, or lost across a reboot) and its bundle is
// still there. It force-deletes the runc container with the binary and
// root the task was created with (options.json), unmounts the rootfs and
// reports the init process as killed (exit status 137), as containerd's
// shims do. A container runc no longer knows is not an error.
func Cleanup(ctx context.Context, runcRoot, ns, id, bundle string) (*taskapi.DeleteResponse, error) {
	opts, err := loadOptions(bundle)
	if err != nil {
		return nil, fmt.Errorf("clean up task %q: %w", id, err)
	}
	r := newRunc(runcRoot, ns, bundle, opts)
	r.PdeathSignal = 0 // delete runs briefly and alone; no thread pinning
	var deleteErr error
	if err := r.Delete(ctx, id, &runc.DeleteOpts{Force: true}); err != nil {
		if err = runcError(err, r, fmt.Sprintf("clean up task %q: runc delete", id)); !isNotExistMessage(err) {
			deleteErr = err
		}
	}
	if err := unmountRootfs(bundle); err != nil {
		return nil, fmt.Errorf("clean up task %q: %w", id, err)
	}
	pid, _ := runc.ReadPidFile(filepath.Join(bundle, initPidFile))
	resp := &taskapi.DeleteResponse{
		Pid:        uint32(max(pid, 0)),
		ExitStatus: 128 + 9,
		ExitedAt:   timestamppb.New(time.Now()),
	}
	return resp, deleteErr
}
