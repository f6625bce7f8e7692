package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/oci"
)

// specTypeURL is the type of a container's spec in the Containers API.
const specTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"

// newRun is one container being created by run.
type newRun struct {
	ro   runOptions
	plan runPlan
	img  runImage
	args []string
	id   string
	ns   string
	dir  string // the CLI's files for the container
}

// createContainer creates the container's snapshot, files and record,
// under a lease until the record references the snapshot. On failure it
// removes what it created.
func createContainer(ctx context.Context, a *app, c *conn, o *containerOptions, r *newRun) (rec *containersapi.Container, err error) {
	r.id, r.ns = newContainerID(), a.opts.namespace
	if r.dir, err = o.containerDir(r.ns, r.id); err != nil {
		return nil, err
	}
	lease, err := newLease(ctx, c, "run")
	if err != nil {
		return nil, err
	}
	defer func() {
		if rerr := lease.release(ctx, false); rerr != nil {
			fmt.Fprintf(a.stderr, "berth: warning: %v\n", rerr)
		}
	}()
	lctx := lease.attach(ctx)
	var undo []func(context.Context)
	defer func() {
		if err != nil {
			uctx, cancel := context.WithTimeout(context.WithoutCancel(lctx), time.Minute)
			defer cancel()
			for _, u := range slices.Backward(undo) {
				u(uctx)
			}
		}
	}()
	mounts, err := prepareSnapshot(lctx, c, r.id, r.img.chainID)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", r.img.name, err)
	}
	undo = append(undo, func(ctx context.Context) { _ = removeSnapshot(ctx, c, defaultSnapshotter, r.id) })
	user, err := resolveRunUser(ctx, r, mounts)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(r.dir, 0o711); err != nil {
		return nil, fmt.Errorf("create the container's directory: %w", err)
	}
	undo = append(undo, func(context.Context) { _ = os.RemoveAll(r.dir) })
	spec, err := runSpec(ctx, o, r, user)
	if err != nil {
		return nil, err
	}
	return createRecord(lctx, c, r, spec)
}

// prepareSnapshot makes the container's writable snapshot, named by its
// ID as ctr names it, on the image's layers.
func prepareSnapshot(ctx context.Context, c *conn, id, parent string) ([]*types.Mount, error) {
	resp, err := snapshotsapi.NewSnapshotsClient(c.cc).Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{
		Snapshotter: defaultSnapshotter, Key: id, Parent: parent,
	})
	if err != nil {
		return nil, fmt.Errorf("prepare snapshot %s on %s: %w", id, parent, err)
	}
	return resp.GetMounts(), nil
}

// resolveRunUser resolves --user, or else the image's user, against the
// image's /etc/passwd and /etc/group: it mounts the snapshot read-only on
// a temporary directory for the look-up. nil: no user given, root.
func resolveRunUser(ctx context.Context, r *newRun, mounts []*types.Mount) (*specs.User, error) {
	name, what := r.ro.user, "--user"
	if name == "" {
		name, what = r.img.config.User, "the user of image "+r.img.name
	}
	if name == "" {
		return nil, nil
	}
	ro := make([]mount.Mount, len(mounts))
	for i, m := range mounts {
		ro[i] = mount.Mount{Type: m.GetType(), Source: m.GetSource(), Target: m.GetTarget(),
			Options: append(slices.Clone(m.GetOptions()), "ro")}
	}
	var user specs.User
	err := mount.WithTempMount(ctx, ro, func(root string) error {
		var err error
		user, err = oci.ResolveUser(root, name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", what, name, err)
	}
	return &user, nil
}

// runSpec generates the container's runtime spec from the image and flags.
func runSpec(ctx context.Context, o *containerOptions, r *newRun, user *specs.User) (*specs.Spec, error) {
	ro, plan := r.ro, r.plan
	opts := []oci.SpecOpt{oci.WithImageConfig(r.img.config)}
	switch {
	case ro.entrypointSet:
		opts = append(opts, oci.WithEntrypoint([]string{ro.entrypoint}, r.args))
	case len(r.args) > 0:
		opts = append(opts, oci.WithEntrypoint(r.img.config.Entrypoint, r.args))
	}
	opts = append(opts, oci.WithEnv(plan.env), oci.WithTTY(ro.tty), oci.WithMounts(plan.mounts...))
	if ro.workdir != "" {
		opts = append(opts, oci.WithCwd(ro.workdir))
	}
	if user != nil {
		opts = append(opts, oci.WithUser(*user))
	}
	if plan.memory > 0 {
		opts = append(opts, oci.WithMemoryLimit(plan.memory))
	}
	if ro.cpus > 0 {
		opts = append(opts, oci.WithCPUs(ro.cpus))
	}
	opts = append(opts, securityOpts(ro, plan)...)
	netOpts, err := networkOpts(o, r)
	if err != nil {
		return nil, err
	}
	spec, err := oci.GenerateSpec(ctx, r.ns, r.id, append(opts, netOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("spec of the container: %w", err)
	}
	return spec, nil
}

func securityOpts(ro runOptions, plan runPlan) []oci.SpecOpt {
	var opts []oci.SpecOpt
	if ro.privileged {
		opts = append(opts, oci.WithPrivileged())
	}
	switch plan.seccomp {
	case "":
	case "unconfined":
		opts = append(opts, oci.WithSeccompUnconfined())
	default:
		opts = append(opts, oci.WithSeccompProfile(plan.seccomp))
	}
	if plan.noNewPrivileges {
		opts = append(opts, oci.WithNoNewPrivileges(true))
	}
	return opts
}

// createRecord creates the container record: the spec, the snapshot that
// the record keeps from garbage collection, and berth's labels.
func createRecord(ctx context.Context, c *conn, r *newRun, spec *specs.Spec) (*containersapi.Container, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	lbls, err := runLabels(r)
	if err != nil {
		return nil, err
	}
	resp, err := containersapi.NewContainersClient(c.cc).Create(ctx, &containersapi.CreateContainerRequest{
		Container: &containersapi.Container{
			ID: r.id, Image: r.img.name, Labels: lbls,
			Runtime:     &containersapi.Container_Runtime{Name: r.ro.runtime},
			Spec:        &anypb.Any{TypeUrl: specTypeURL, Value: b},
			Snapshotter: defaultSnapshotter, SnapshotKey: r.id,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("create container record %s: %w", r.id, err)
	}
	return resp.GetContainer(), nil
}

func runLabels(r *newRun) (map[string]string, error) {
	lbls := map[string]string{labelStateDir: r.dir, labelNetwork: r.ro.network}
	if r.ro.name != "" {
		lbls[labelName] = r.ro.name
	}
	if r.ro.detach {
		lbls[labelLogURI] = "file://" + filepath.Join(r.dir, r.id+".log")
	}
	if sig := r.img.config.StopSignal; sig != "" {
		if _, err := oci.ParseSignal(sig); err != nil {
			return nil, fmt.Errorf("image %s: StopSignal: %w", r.img.name, err)
		}
		lbls[labelStopSignal] = sig
	}
	if len(r.plan.ports) > 0 {
		b, err := json.Marshal(r.plan.ports)
		if err != nil {
			return nil, err
		}
		lbls[labelPorts] = string(b)
	}
	return lbls, nil
}

// checkNameFree fails when another container of the namespace has name.
func checkNameFree(ctx context.Context, c *conn, ns, name string) error {
	if name == "" {
		return nil
	}
	recs, err := listContainers(ctx, c)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if containerName(rec) == name || rec.GetID() == name {
			return fmt.Errorf("name %q is in use by container %s in namespace %q: remove it (berth rm %s) or choose another name: %w",
				name, shortID(rec.GetID()), ns, name, errdefs.ErrAlreadyExists)
		}
	}
	return nil
}
