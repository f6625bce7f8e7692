package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strconv"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berth-dev/berth/oci"
)

// processTypeURL is the type of an exec's process spec in the Tasks API.
const processTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/Process"

type execOptions struct {
	interactive, tty, detach bool
	env                      []string
	user, workdir            string
}

func newExecCommand(a *app) *cobra.Command {
	var o execOptions
	cmd := &cobra.Command{
		Use:   "exec [-i] [-t] [-d] [-e K=V] [-u USER] [-w DIR] CONTAINER CMD [ARG...]",
		Short: "Run a command in a running container",
		Long: `Run a command in a running container, with the environment, user and working
directory of its main process unless -e, -u and -w say otherwise. berth exits
with the command's exit status; with -d it starts the command and returns.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.detach && (o.interactive || o.tty) {
				return errors.New("exec -d runs the command without a terminal or input: drop -i and -t")
			}
			ctx := cmd.Context()
			if !o.detach {
				ctx = context.WithoutCancel(ctx) // signals go to the command
			}
			return a.run(ctx, func(ctx context.Context, c *conn) error {
				return runExec(ctx, a, c, args[0], args[1:], o)
			})
		},
	}
	cmd.Flags().SetInterspersed(false)
	f := cmd.Flags()
	f.BoolVarP(&o.interactive, "interactive", "i", false, "pass berth's standard input to the command")
	f.BoolVarP(&o.tty, "tty", "t", false, "give the command a terminal")
	f.BoolVarP(&o.detach, "detach", "d", false, "start the command and return")
	f.StringArrayVarP(&o.env, "env", "e", nil, "set an environment variable, KEY=VALUE (or KEY to pass berth's)")
	f.StringVarP(&o.user, "user", "u", "", "user to run as: name, uid, name:group or uid:gid")
	f.StringVarP(&o.workdir, "workdir", "w", "", "working directory in the container")
	return cmd
}

func runExec(ctx context.Context, a *app, c *conn, ref string, args []string, o execOptions) error {
	rec, err := findContainer(ctx, a, c, ref)
	if err != nil {
		return err
	}
	t, err := getTask(ctx, c, rec.GetID())
	if err != nil {
		return err
	}
	if !isRunning(t) {
		return fmt.Errorf("container %s is not running: start it first (berth start): %w", describe(rec), errdefs.ErrFailedPrecondition)
	}
	process, err := execProcess(ctx, rec, t.GetPid(), args, o)
	if err != nil {
		return err
	}
	p := proc{c: c, id: rec.GetID(), execID: "exec-" + randomSuffix() + randomSuffix()}
	if o.detach {
		if err := createExec(ctx, p, process, taskIO{}); err != nil {
			return fmt.Errorf("exec in container %s: %w", describe(rec), err)
		}
		return p.start(ctx)
	}
	at, err := newAttachment(ctx, rec.GetID(), o.interactive, o.tty)
	if err != nil {
		return err
	}
	defer at.close()
	if err := createExec(ctx, p, process, at.taskIO()); err != nil {
		return fmt.Errorf("exec in container %s: %w", describe(rec), err)
	}
	status, err := attach(ctx, a, p, at)
	dctx := context.WithoutCancel(ctx)
	_, derr := p.tasks().DeleteProcess(dctx, &tasksapi.DeleteProcessRequest{ContainerID: p.id, ExecID: p.execID})
	if err != nil {
		return fmt.Errorf("exec in container %s: %w", describe(rec), err)
	}
	if derr != nil && !errdefs.IsNotFound(derr) {
		fmt.Fprintf(a.stderr, "berth: warning: delete exec %s of container %s: %v\n", p.execID, describe(rec), derr)
	}
	return exitResult(status)
}

// execProcess is the process spec of an exec: the container's process with
// args and the options' changes. A user is resolved in the container's
// root filesystem, as its init process (pid) sees it.
func execProcess(ctx context.Context, rec *containersapi.Container, pid uint32, args []string, o execOptions) (*specs.Process, error) {
	spec, err := specOf(rec)
	if err != nil {
		return nil, err
	}
	opts := []oci.SpecOpt{oci.WithProcessArgs(args...), oci.WithTTY(o.tty), oci.WithEnv(o.env)}
	if o.workdir != "" {
		if !path.IsAbs(o.workdir) {
			return nil, fmt.Errorf("--workdir %q is not an absolute path: %w", o.workdir, errdefs.ErrInvalidArgument)
		}
		opts = append(opts, oci.WithCwd(o.workdir))
	}
	if o.user != "" {
		u, err := oci.ResolveUser("/proc/"+strconv.Itoa(int(pid))+"/root", o.user)
		if err != nil {
			return nil, fmt.Errorf("--user %q in container %s: %w", o.user, describe(rec), err)
		}
		opts = append(opts, oci.WithUser(u))
	}
	for _, opt := range opts {
		if err := opt(ctx, spec); err != nil {
			return nil, err
		}
	}
	return spec.Process, nil
}

func createExec(ctx context.Context, p proc, process *specs.Process, tio taskIO) error {
	b, err := json.Marshal(process)
	if err != nil {
		return err
	}
	_, err = p.tasks().Exec(ctx, &tasksapi.ExecProcessRequest{
		ContainerID: p.id, ExecID: p.execID, Spec: &anypb.Any{TypeUrl: processTypeURL, Value: b},
		Terminal: tio.terminal, Stdin: tio.stdin, Stdout: tio.stdout, Stderr: tio.stderr,
	})
	return err
}
