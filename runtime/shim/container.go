package shim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/berth-dev/berth/mount"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Files the shim keeps in a task's bundle.
const (
	optionsFile = "options.json" // the runtime options, for `delete` after a crash
	initPidFile = "init.pid"
	runcLogFile = "log.json"
	rootfsDir   = "rootfs"
)

// DefaultRuncRoot is the parent of the runc state directories, one per
// namespace, when the options name no Root.
const DefaultRuncRoot = "/run/berth/runc"

// container is one task: a runc container and its processes.
type container struct {
	id     string
	bundle string
	runc   *runc.Runc
	rootfs []mount.Mount // mounted on bundle/rootfs by Create, unmounted by Delete
	// sharedPidNS: the container shares the shim's pid namespace, so its
	// init's exit does not end its other processes; the shim kills them.
	sharedPidNS  bool
	noPivot      bool
	noNewKeyring bool
	init         *process

	mu sync.Mutex
	// execs by exec id; runningExecs counts those started and not yet
	// reported exited. The init's exit is published after theirs
	// (initExited holds it back until then).
	execs         map[string]*process
	runningExecs  int
	initExited    bool
	initPublished bool
}

func (c *container) exec(execID string) (*process, error) {
	if execID == "" {
		return c.init, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.execs[execID]
	if !ok {
		return nil, fmt.Errorf("exec %q of task %q: %w", execID, c.id, errdefs.ErrNotFound)
	}
	return p, nil
}

// execIDs maps the pids of the running execs to their ids.
func (c *container) execIDs() map[int]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := map[int]string{}
	for id, p := range c.execs {
		if pid, _, _, _ := p.state(); pid > 0 {
			ids[pid] = id
		}
	}
	return ids
}

// readOptions decodes the runc options of a Create request (type
// containerd.runc.v1.Options); other option types are ignored.
func readOptions(a *anypb.Any) (*options.Options, error) {
	opts := &options.Options{}
	if a == nil || !strings.HasSuffix(a.GetTypeUrl(), "containerd.runc.v1.Options") {
		return opts, nil
	}
	if err := proto.Unmarshal(a.GetValue(), opts); err != nil {
		return nil, fmt.Errorf("runtime options %s: %w: %w", a.GetTypeUrl(), err, errdefs.ErrInvalidArgument)
	}
	return opts, nil
}

// writeOptions keeps opts in the bundle, for `delete` to find the runc
// binary and root of a shim that died.
func writeOptions(bundle string, opts *options.Options) error {
	data, err := json.Marshal(opts)
	if err != nil {
		return fmt.Errorf("encode runtime options: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, optionsFile), data, 0o600); err != nil {
		return fmt.Errorf("write runtime options: %w", err)
	}
	return nil
}

// loadOptions reads what writeOptions wrote; no file means no options.
func loadOptions(bundle string) (*options.Options, error) {
	opts := &options.Options{}
	data, err := os.ReadFile(filepath.Join(bundle, optionsFile))
	if errors.Is(err, os.ErrNotExist) {
		return opts, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read runtime options: %w", err)
	}
	if err := json.Unmarshal(data, opts); err != nil {
		return nil, fmt.Errorf("decode %s: %w", filepath.Join(bundle, optionsFile), err)
	}
	return opts, nil
}

// newRunc returns the runc client for a bundle: the options' binary (runc,
// crun, runsc...) and root, a state directory per namespace, and runc's
// log in the bundle, where runcError reads failures from.
func newRunc(runcRoot, ns, bundle string, opts *options.Options) *runc.Runc {
	root := runcRoot
	if opts.Root != "" {
		root = opts.Root
	}
	if root == "" {
		root = DefaultRuncRoot
	}
	return &runc.Runc{
		Command:       opts.BinaryName, // empty means "runc"
		Root:          filepath.Join(root, ns),
		Log:           filepath.Join(bundle, runcLogFile),
		LogFormat:     runc.JSON,
		PdeathSignal:  unix.SIGKILL,
		SystemdCgroup: opts.SystemdCgroup,
	}
}

// runcError adds runc's own explanation, the last error in its log, to an
// error from go-runc, which only knows the exit status.
func runcError(err error, r *runc.Runc, what string) error {
	if msg := lastRuncError(r.Log); msg != "" {
		return fmt.Errorf("%s: %s: %w", what, msg, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func lastRuncError(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var last string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var entry struct{ Level, Msg string }
		if json.Unmarshal(sc.Bytes(), &entry) == nil && entry.Level == "error" {
			last = entry.Msg
		}
	}
	return last
}

// mountRootfs mounts the request's rootfs mounts on bundle/rootfs. With no
// mounts the bundle's rootfs is used as it is.
func mountRootfs(bundle string, ms []*types.Mount) ([]mount.Mount, error) {
	if len(ms) == 0 {
		return nil, nil
	}
	target := filepath.Join(bundle, rootfsDir)
	if err := os.MkdirAll(target, 0o711); err != nil {
		return nil, fmt.Errorf("rootfs directory: %w", err)
	}
	mounts := make([]mount.Mount, 0, len(ms))
	for _, m := range ms {
		mounts = append(mounts, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	if err := mount.All(mounts, target); err != nil {
		_ = mount.UnmountMounts(mounts, target, 0)
		return nil, fmt.Errorf("mount rootfs on %s: %w", target, err)
	}
	return mounts, nil
}

// unmountRootfs unmounts whatever is mounted on bundle/rootfs, including
// mounts of a shim that died, so it needs no record of them.
func unmountRootfs(bundle string) error {
	target := filepath.Join(bundle, rootfsDir)
	if err := mount.UnmountAll(target, unix.MNT_DETACH); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unmount rootfs %s: %w", target, err)
	}
	return nil
}

// sharesPidNS reads the bundle's spec: does the container lack a pid
// namespace of its own? An unreadable spec counts as shared, the case in
// which the shim must clean up.
func sharesPidNS(bundle string) bool {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return true
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil || spec.Linux == nil {
		return true
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace && ns.Path == "" {
			return false
		}
	}
	return true
}
