package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	"github.com/containerd/errdefs"
	"github.com/spf13/cobra"
)

// Defaults of run.
const (
	defaultRuntime     = "io.containerd.runc.v2"
	defaultSnapshotter = "overlayfs"
)

// runOptions are run's flags.
type runOptions struct {
	detach, rm, interactive, tty bool
	name                         string
	env, envFiles                []string
	volumes, publish             []string
	network, runtime             string
	user, workdir                string
	entrypoint                   string
	entrypointSet                bool
	memory                       string
	cpus                         float64
	hostname                     string
	privileged                   bool
	securityOpts                 []string
	pull                         string
}

func newRunCommand(a *app, o *containerOptions) *cobra.Command {
	var ro runOptions
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [CMD [ARG...]]",
		Short: "Create and start a container from an image",
		Long: `Create a container from an image and start it, as docker and nerdctl do. The
image is pulled first when absent (--pull). In the foreground berth copies the
container's output to the terminal, passes on signals, and exits with its exit
status; with -d it prints the container's ID and returns, the output going to
a log file that berth logs reads.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ro.entrypointSet = cmd.Flags().Changed("entrypoint")
			ctx := cmd.Context()
			if !ro.detach {
				ctx = context.WithoutCancel(ctx) // signals go to the container
			}
			return a.run(ctx, func(ctx context.Context, c *conn) error {
				return runContainer(ctx, a, c, o, ro, args[0], args[1:])
			})
		},
	}
	cmd.Flags().SetInterspersed(false) // flags after the image belong to its command
	addRunFlags(cmd, &ro)
	return cmd
}

func addRunFlags(cmd *cobra.Command, ro *runOptions) {
	f := cmd.Flags()
	f.BoolVarP(&ro.detach, "detach", "d", false, "run in the background and print the container's ID")
	f.BoolVar(&ro.rm, "rm", false, "remove the container once it exits")
	f.BoolVarP(&ro.interactive, "interactive", "i", false, "pass berth's standard input to the container")
	f.BoolVarP(&ro.tty, "tty", "t", false, "give the container a terminal")
	f.StringVar(&ro.name, "name", "", "name of the container, unique in the namespace")
	f.StringArrayVarP(&ro.env, "env", "e", nil, "set an environment variable, KEY=VALUE (or KEY to pass berth's)")
	f.StringArrayVar(&ro.envFiles, "env-file", nil, "read environment variables from a file of KEY=VALUE lines")
	f.StringArrayVarP(&ro.volumes, "volume", "v", nil, "bind a host path: /host:/ctr[:ro]")
	f.StringArrayVarP(&ro.publish, "publish", "p", nil, "publish a port: [IP:]HOSTPORT:CTRPORT[/udp] (bridge network)")
	f.StringVar(&ro.network, "network", "bridge", "network: bridge, host or none")
	f.StringVar(&ro.runtime, "runtime", defaultRuntime, "runtime: a type (io.containerd.runc.v2) or a handler berthd's config names (runc, crun, runsc)")
	f.StringVarP(&ro.user, "user", "u", "", "user to run as: name, uid, name:group or uid:gid (default: the image's)")
	f.StringVarP(&ro.workdir, "workdir", "w", "", "working directory in the container (default: the image's)")
	f.StringVar(&ro.entrypoint, "entrypoint", "", "replace the image's entrypoint; its Cmd is dropped")
	f.StringVarP(&ro.memory, "memory", "m", "", "memory limit, such as 64m or 1g")
	f.Float64Var(&ro.cpus, "cpus", 0, "CPU limit, in CPUs (0.5: half of one)")
	f.StringVar(&ro.hostname, "hostname", "", "hostname in the container (default: the first 12 characters of its ID)")
	f.BoolVar(&ro.privileged, "privileged", false, "give the container every capability and device, without seccomp")
	f.StringArrayVar(&ro.securityOpts, "security-opt", nil, "seccomp=unconfined, seccomp=PROFILE.json or no-new-privileges")
	f.StringVar(&ro.pull, "pull", "missing", "pull the image: missing, always or never")
}

// namePattern is docker's rule for container names.
var namePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// check rejects flag combinations before anything is created.
func (ro runOptions) check() error {
	switch {
	case ro.detach && ro.rm:
		return errors.New("--rm needs the foreground: berth removes the container when it exits, and with -d berth is gone by then")
	case ro.detach && (ro.interactive || ro.tty):
		return errors.New("-d runs the container without a terminal or input: drop -i and -t")
	case ro.name != "" && !namePattern.MatchString(ro.name):
		return fmt.Errorf("invalid --name %q: use letters, digits, '_', '.' and '-', starting with a letter or digit: %w",
			ro.name, errdefs.ErrInvalidArgument)
	case ro.pull != "missing" && ro.pull != "always" && ro.pull != "never":
		return fmt.Errorf("invalid --pull %q: use missing, always or never: %w", ro.pull, errdefs.ErrInvalidArgument)
	case ro.cpus < 0:
		return fmt.Errorf("negative --cpus %g: %w", ro.cpus, errdefs.ErrInvalidArgument)
	}
	return nil
}

// newContainerID is 64 random hex digits, as docker's and nerdctl's.
func newContainerID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// runContainer is run: check the flags, find the image, create the
// container, then start it detached or in the foreground.
func runContainer(ctx context.Context, a *app, c *conn, o *containerOptions, ro runOptions, ref string, args []string) error {
	if err := ro.check(); err != nil {
		return err
	}
	plan, err := planRun(ro)
	if err != nil {
		return err
	}
	if err := checkNameFree(ctx, c, a.opts.namespace, ro.name); err != nil {
		return err
	}
	img, err := resolveRunImage(ctx, a, c, ref, ro.pull)
	if err != nil {
		return err
	}
	if err := checkCommand(img, ro, args); err != nil {
		return err
	}
	rec, err := createContainer(ctx, a, c, o, &newRun{ro: ro, plan: plan, img: img, args: args})
	if err != nil {
		return err
	}
	if ro.detach {
		return runDetached(ctx, a, c, rec)
	}
	return runForeground(ctx, a, c, o, ro, rec)
}

// runDetached starts the container with its output in its log file and
// prints its ID. A container that cannot start stays, created, for
// inspection: berth rm removes it.
func runDetached(ctx context.Context, a *app, c *conn, rec *containersapi.Container) error {
	uri := rec.GetLabels()[labelLogURI]
	spec, err := specOf(rec)
	if err != nil {
		return err
	}
	if err := createTask(ctx, c, rec, taskIO{stdout: uri, stderr: uri, terminal: spec.Process.Terminal}); err != nil {
		return err
	}
	if err := startOrDelete(ctx, c, rec); err != nil {
		return err
	}
	_, err = fmt.Fprintln(a.stdout, rec.GetID())
	return err
}

// runForeground runs the container attached to berth's streams and
// returns its exit status; with --rm it removes the container after.
func runForeground(ctx context.Context, a *app, c *conn, o *containerOptions, ro runOptions, rec *containersapi.Container) (err error) {
	if ro.rm {
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if rerr := removeContainer(rctx, a, c, o, rec, true); rerr != nil {
				a.printError(fmt.Errorf("--rm: %w", c.explain(rerr)))
				if err == nil {
					err = errReported
				}
			}
		}()
	}
	at, err := newAttachment(ctx, rec.GetID(), ro.interactive, ro.tty)
	if err != nil {
		return err
	}
	defer at.close()
	if err := createTask(ctx, c, rec, at.taskIO()); err != nil {
		return err
	}
	status, err := attach(ctx, a, proc{c: c, id: rec.GetID()}, at)
	var notStarted *startFailure
	if errors.As(err, &notStarted) && !ro.rm {
		_ = deleteTask(context.WithoutCancel(ctx), c, rec.GetID())
	}
	if err != nil {
		return fmt.Errorf("container %s: %w", describe(rec), err)
	}
	return exitResult(status)
}
