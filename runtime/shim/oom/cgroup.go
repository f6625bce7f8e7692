package oom

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Cgroup is a memory cgroup directory and the version of its hierarchy.
type Cgroup struct {
	Dir string
	V2  bool
}

// Locate finds the memory cgroup a process is in from its
// /proc/<pid>/cgroup and the reader's /proc/self/mountinfo: the v1 memory
// hierarchy if the process has one (legacy and hybrid hosts), else the v2
// one, whose directory must have the memory controller (memory.events).
func Locate(procCgroup, mountinfo []byte) (Cgroup, error) {
	var v1Path, v2Path string
	var haveV1, haveV2 bool
	for line := range strings.Lines(string(procCgroup)) {
		// hierarchy-id:controllers:path
		id, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		controllers, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		switch {
		case id == "0" && controllers == "":
			v2Path, haveV2 = path, true
		case slices.Contains(strings.Split(controllers, ","), "memory"):
			v1Path, haveV1 = path, true
		}
	}
	if haveV1 {
		dir, err := mountDir(mountinfo, v1Path, func(fstype, superOpts string) bool {
			return fstype == "cgroup" && slices.Contains(strings.Split(superOpts, ","), "memory")
		})
		if err != nil {
			return Cgroup{}, fmt.Errorf("v1 memory cgroup %s: %w", v1Path, err)
		}
		return Cgroup{Dir: dir}, nil
	}
	if !haveV2 {
		return Cgroup{}, errors.New("no memory cgroup in /proc/<pid>/cgroup")
	}
	dir, err := mountDir(mountinfo, v2Path, func(fstype, _ string) bool { return fstype == "cgroup2" })
	if err != nil {
		return Cgroup{}, fmt.Errorf("cgroup v2 %s: %w", v2Path, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "memory.events")); err != nil {
		return Cgroup{}, fmt.Errorf("cgroup v2 %s: no memory controller: %w", dir, err)
	}
	return Cgroup{Dir: dir, V2: true}, nil
}

// mountDir returns the directory of cgroup path under the first mount that
// match accepts and whose root contains it.
func mountDir(mountinfo []byte, path string, match func(fstype, superOpts string) bool) (string, error) {
	for line := range bytes.Lines(mountinfo) {
		// id parent major:minor root mountpoint options [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(strings.TrimSpace(string(line)), " - ")
		if !ok {
			continue
		}
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(tail) < 3 || !match(tail[0], tail[2]) {
			continue
		}
		root, mountpoint := unescape(fields[3]), unescape(fields[4])
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			continue
		}
		return filepath.Join(mountpoint, rel), nil
	}
	return "", errors.New("not under any mounted cgroup hierarchy")
}

// unescape undoes mountinfo's octal escapes of space, tab, newline and
// backslash.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}
