package oci

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// capabilityNames are the kernel's capabilities, indexed by number
// (linux/capability.h).
var capabilityNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
	"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
	"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// What the process building the spec may grant. A container's process
// gets its capabilities and oom_score_adj from runc, which has this
// process's (or the daemon's) limits; tests replace these readers.
var (
	readBoundingCaps = func() ([]string, error) {
		status, err := os.ReadFile("/proc/self/status")
		if err != nil {
			return nil, err
		}
		return parseCapBnd(status)
	}
	readOOMScoreAdj = func() (int, error) {
		b, err := os.ReadFile("/proc/self/oom_score_adj")
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(strings.TrimSpace(string(b)))
	}
)

// parseCapBnd returns the names of the capabilities in the CapBnd line of
// a /proc/<pid>/status. Bits this package has no name for (capabilities
// newer than it) are left out: no runtime it drives would know them.
func parseCapBnd(status []byte) ([]string, error) {
	for line := range bytes.Lines(status) {
		hex, ok := bytes.CutPrefix(line, []byte("CapBnd:"))
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(string(bytes.TrimSpace(hex)), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("CapBnd %q: %w", bytes.TrimSpace(hex), err)
		}
		var caps []string
		for i, name := range capabilityNames {
			if mask&(1<<i) != 0 {
				caps = append(caps, name)
			}
		}
		return caps, nil
	}
	return nil, fmt.Errorf("no CapBnd line in process status")
}

// currentCapabilities is the bounding set of the process building the
// spec: what a runtime started by it can grant.
func currentCapabilities() ([]string, error) {
	caps, err := readBoundingCaps()
	if err != nil {
		return nil, fmt.Errorf("read this process's capability bounding set: %w", err)
	}
	return caps, nil
}

// capabilityName accepts docker's spellings of a capability: "sys_admin",
// "SYS_ADMIN" or "CAP_SYS_ADMIN".
func capabilityName(c string) (string, error) {
	name := strings.ToUpper(c)
	if !strings.HasPrefix(name, "CAP_") {
		name = "CAP_" + name
	}
	if !slices.Contains(capabilityNames, name) {
		return "", fmt.Errorf("capability %q: unknown: %w", c, errdefs.ErrInvalidArgument)
	}
	return name, nil
}

// WithAddedCapabilities is docker's --cap-add: each capability joins the
// bounding, effective and permitted sets. "ALL" adds every capability this
// process's bounding set holds; runc could not grant any other.
func WithAddedCapabilities(caps ...string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		var add []string
		for _, c := range caps {
			if strings.EqualFold(c, "ALL") {
				all, err := currentCapabilities()
				if err != nil {
					return err
				}
				add = append(add, all...)
				continue
			}
			name, err := capabilityName(c)
			if err != nil {
				return err
			}
			add = append(add, name)
		}
		c := ensureCapabilities(s)
		for _, set := range []*[]string{&c.Bounding, &c.Effective, &c.Permitted} {
			for _, name := range add {
				if !slices.Contains(*set, name) {
					*set = append(*set, name)
				}
			}
		}
		return nil
	}
}

// WithDroppedCapabilities is docker's --cap-drop: each capability leaves
// every set. "ALL" empties them. Options apply in order, so
// --cap-drop ALL --cap-add X is the drop followed by the add.
func WithDroppedCapabilities(caps ...string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		all := false
		var drop []string
		for _, c := range caps {
			if strings.EqualFold(c, "ALL") {
				all = true
				continue
			}
			name, err := capabilityName(c)
			if err != nil {
				return err
			}
			drop = append(drop, name)
		}
		c := ensureCapabilities(s)
		for _, set := range []*[]string{&c.Bounding, &c.Effective, &c.Permitted, &c.Inheritable, &c.Ambient} {
			if all {
				*set = nil
				continue
			}
			*set = slices.DeleteFunc(*set, func(n string) bool { return slices.Contains(drop, n) })
		}
		return nil
	}
}

// WithOOMScoreAdj sets the container's oom_score_adj, from -1000 (never
// killed) to 1000 (killed first).
//
// It clamps rather than fails: lowering a score below the one a process
// has needs CAP_SYS_RESOURCE, and a runtime without it in its bounding set
// (this process's, read from /proc/self/status; an unprivileged or nested
// host) cannot set a lower one, so runc would refuse to start the
// container. Without the capability the score is therefore raised to this
// process's current oom_score_adj (/proc/self/oom_score_adj), which the
// runtime it starts inherits.
func WithOOMScoreAdj(adj int) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if adj < -1000 || adj > 1000 {
			return fmt.Errorf("oom_score_adj %d: must be from -1000 to 1000: %w", adj, errdefs.ErrInvalidArgument)
		}
		caps, err := currentCapabilities()
		if err != nil {
			return fmt.Errorf("oom_score_adj %d: %w", adj, err)
		}
		score := adj
		if !slices.Contains(caps, "CAP_SYS_RESOURCE") {
			cur, err := readOOMScoreAdj()
			if err != nil {
				return fmt.Errorf("oom_score_adj %d: read this process's score: %w", adj, err)
			}
			score = max(adj, cur)
		}
		ensureProcess(s).OOMScoreAdj = &score
		return nil
	}
}
