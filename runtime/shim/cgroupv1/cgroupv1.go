// Package cgroupv1 is what the shim needs of cgroup v1: a process's
// metrics, as io.containerd.cgroups.v1.Metrics for the task API's Stats,
// and moving a process into a cgroup (the runtime options' ShimCgroup).
//
// It reads the cgroup files the way containerd's cgroups library
// (github.com/containerd/cgroups/v3/cgroup1) does, field for field, so
// that the daemon gets the same metrics as from containerd's shim. The
// shim does not link that library: its systemd support brings D-Bus and
// crypto into the binary, and each MiB of binary is about a MiB of
// resident memory in every shim. The metrics are the library's generated
// protobuf package (cgroup1/stats), which imports nothing else.
//
// A Cgroup is found once (Load, Static) and then read (Stat) or joined
// (AddProc) any number of times; it holds directory names only.
package cgroupv1

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
)

// Cgroup maps each v1 controller (and named hierarchy, as
// "name=systemd") to the directory of a cgroup in it.
type Cgroup map[string]string

// Load finds the v1 cgroup of process pid, in the controllers where its
// directory exists.
func Load(pid int) (Cgroup, error) {
	procCgroup, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, fmt.Errorf("cgroup of pid %d: %w", pid, err)
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return existing(Locate(procCgroup, mountinfo), fmt.Sprintf("cgroup of pid %d", pid))
}

// Static returns the cgroup at path in every mounted v1 hierarchy where
// that directory exists.
func Static(path string) (Cgroup, error) {
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return existing(static(mountinfo, path), "cgroup "+path)
}

// static maps path onto each v1 hierarchy of mountinfo.
func static(mountinfo []byte, path string) Cgroup {
	c := Cgroup{}
	for _, m := range mounts(mountinfo) {
		for _, ctrl := range m.controllers {
			c[ctrl] = filepath.Join(m.point, path)
		}
	}
	return c
}

// existing drops the controllers whose directory does not exist; with
// none left the cgroup is gone.
func existing(c Cgroup, what string) (Cgroup, error) {
	for ctrl, dir := range c {
		if _, err := os.Lstat(dir); err != nil {
			delete(c, ctrl)
		}
	}
	if len(c) == 0 {
		return nil, fmt.Errorf("%s: not in any v1 hierarchy: %w", what, errdefs.ErrNotFound)
	}
	return c, nil
}

// Locate maps a process's /proc/<pid>/cgroup onto the v1 hierarchies
// mounted in mountinfo (the reader's /proc/self/mountinfo). Controllers
// not mounted, or whose cgroup lies outside the mount's root, are left
// out; so is the v2 hierarchy.
func Locate(procCgroup, mountinfo []byte) Cgroup {
	ms := mounts(mountinfo)
	c := Cgroup{}
	for line := range strings.Lines(string(procCgroup)) {
		// hierarchy-id:controllers:path
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 || parts[1] == "" {
			continue
		}
		for _, ctrl := range strings.Split(parts[1], ",") {
			i := slices.IndexFunc(ms, func(m mount) bool { return slices.Contains(m.controllers, ctrl) })
			if i < 0 {
				continue
			}
			rel, err := filepath.Rel(ms[i].root, parts[2])
			if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
				continue
			}
			c[ctrl] = filepath.Join(ms[i].point, rel)
		}
	}
	return c
}

// mount is a mounted v1 hierarchy.
type mount struct {
	root, point string
	controllers []string // and "name=..." for a named hierarchy
}

// controllers are the v1 controllers the kernel knows, as mount options.
var controllers = []string{
	"blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb",
	"memory", "misc", "net_cls", "net_prio", "perf_event", "pids", "rdma",
}

// mounts lists the v1 hierarchies of a mountinfo.
func mounts(mountinfo []byte) []mount {
	var ms []mount
	for line := range bytes.Lines(mountinfo) {
		// id parent major:minor root mountpoint options [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(strings.TrimSpace(string(line)), " - ")
		if !ok {
			continue
		}
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(tail) < 3 || tail[0] != "cgroup" {
			continue
		}
		m := mount{root: unescape(fields[3]), point: unescape(fields[4])}
		for _, opt := range strings.Split(tail[2], ",") {
			if strings.HasPrefix(opt, "name=") || slices.Contains(controllers, opt) {
				m.controllers = append(m.controllers, opt)
			}
		}
		ms = append(ms, m)
	}
	return ms
}

// unescape undoes mountinfo's octal escapes of space, tab, newline and
// backslash.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// AddProc moves process pid into the cgroup, in each of its hierarchies.
func (c Cgroup) AddProc(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("add pid %d to cgroup: %w", pid, errdefs.ErrInvalidArgument)
	}
	// Controllers mounted together share a directory: write it once.
	for _, dir := range slices.Compact(slices.Sorted(maps.Values(c))) {
		if err := writeProcs(filepath.Join(dir, "cgroup.procs"), pid); err != nil {
			return fmt.Errorf("add pid %d to cgroup %s: %w", pid, dir, err)
		}
	}
	return nil
}

// writeProcs writes pid to a cgroup.procs file. The kernel refuses a
// process that is still being created with EINVAL: that is retried, as
// runc and the cgroups library do.
func writeProcs(path string, pid int) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	for range 5 {
		if _, err = f.Write([]byte(strconv.Itoa(pid))); !errors.Is(err, syscall.EINVAL) {
			return err
		}
		time.Sleep(30 * time.Millisecond)
	}
	return err
}
