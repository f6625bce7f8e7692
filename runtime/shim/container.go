package shim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/berth-dev/berth/mount"
	"github.com/berth-dev/berth/runtime/shim/oom"
	"github.com/berth-dev/berth/runtime/shim/runtimeopts"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
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
	// oom watches the init's cgroup from Create to Delete; nil if it
	// cannot be watched.
	oom *oom.Watcher

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

// writeOptions keeps the runtime config in the bundle, for `delete` to find
// the runtime binary, root and flags of a shim that died.
func writeOptions(bundle string, cfg *runtimeopts.Config) error {
	data, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode runtime options: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, optionsFile), data, 0o600); err != nil {
		return fmt.Errorf("write runtime options: %w", err)
	}
	return nil
}

// loadOptions reads what writeOptions wrote; no file means no options.
func loadOptions(bundle string) (*runtimeopts.Config, error) {
	cfg := &runtimeopts.Config{}
	data, err := os.ReadFile(filepath.Join(bundle, optionsFile))
	if errors.Is(err, os.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read runtime options: %w", err)
	}
	if err := json.Unmarshal(data, cfg); err != nil {
		return nil, fmt.Errorf("decode %s: %w", filepath.Join(bundle, optionsFile), err)
	}
	return cfg, nil
}

// newRunc returns the runtime client for a bundle: the options' binary
// (runc, crun, runsc...), root and global flags, a state directory per
// namespace, and the runtime's log in the bundle, where runcError reads
// failures from.
func newRunc(runcRoot, ns, bundle string, cfg *runtimeopts.Config) *runc.Runc {
	root := runcRoot
	if cfg.Root != "" {
		root = cfg.Root
	}
	if root == "" {
		root = DefaultRuncRoot
	}
	return &runc.Runc{
		Command:       cfg.BinaryName, // empty means "runc"
		Root:          filepath.Join(root, ns),
		Log:           filepath.Join(bundle, runcLogFile),
		LogFormat:     runc.JSON,
		PdeathSignal:  unix.SIGKILL,
		SystemdCgroup: cfg.SystemdCgroup,
		ExtraArgs:     cfg.GlobalFlags,
	}
}

// runcError adds runc's own explanation, the last error in its log, to an
// error from go-runc, which only knows the exit status.
func runcError(err error, r *runc.Runc, what string) error {
	// runsc prints its error on stderr too, which go-runc puts in err.
	if msg := lastRuncError(r.Log); msg != "" && !strings.Contains(err.Error(), msg) {
		return fmt.Errorf("%s: %s: %w", what, msg, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// lastRuncError returns the message of the last error in the runtime's JSON
// log (its last 64 KiB, since every invocation appends to it).
func lastRuncError(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const tail = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > tail {
		_, _ = f.Seek(-tail, io.SeekEnd)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return ""
	}
	return lastLogError(data)
}

// lastLogError reads a runtime log as a stream of JSON objects: runc and
// crun write one a line, but runsc ends its error without a newline, so
// that the next invocation's entries follow on the same line. Whatever is
// not an object (a text line, a cut-off entry) is skipped.
func lastLogError(data []byte) string {
	var last string
	for {
		i := bytes.IndexByte(data, '{')
		if i < 0 {
			return last
		}
		data = data[i:]
		dec := json.NewDecoder(bytes.NewReader(data))
		var entry struct{ Level, Msg string }
		if err := dec.Decode(&entry); err != nil {
			data = data[1:]
			continue
		}
		if entry.Level == "error" || entry.Level == "fatal" {
			last = entry.Msg
		}
		data = data[dec.InputOffset():]
	}
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
