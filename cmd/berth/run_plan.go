package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/network"
	"github.com/berth-dev/berth/oci"
)

// Network modes of run.
const (
	networkBridge = "bridge"
	networkHost   = "host"
	networkNone   = "none"
)

// runPlan is run's flags parsed and checked, before anything is created:
// a mistake in them leaves nothing behind.
type runPlan struct {
	mounts []specs.Mount
	ports  []network.PortMapping
	// env is the env files' variables followed by -e's.
	env             []string
	memory          int64
	seccomp         string // "", "unconfined" or a profile's path
	noNewPrivileges bool
}

func planRun(ro runOptions) (runPlan, error) {
	var p runPlan
	var err error
	switch ro.network {
	case networkBridge, networkHost, networkNone:
	default:
		return p, fmt.Errorf("invalid --network %q: use bridge, host or none: %w", ro.network, errdefs.ErrInvalidArgument)
	}
	if len(ro.publish) > 0 {
		if ro.network != networkBridge {
			return p, fmt.Errorf("-p publishes ports of the bridge network; with --network %s there is none to publish (the container uses %s): %w",
				ro.network, map[string]string{networkHost: "the host's ports", networkNone: "no network"}[ro.network], errdefs.ErrInvalidArgument)
		}
		if p.ports, err = network.ParsePorts(ro.publish); err != nil {
			return p, err
		}
	}
	for _, v := range ro.volumes {
		m, err := oci.ParseVolume(v)
		if err != nil {
			return p, err
		}
		p.mounts = append(p.mounts, m)
	}
	for _, file := range ro.envFiles {
		env, err := readEnvFile(file)
		if err != nil {
			return p, err
		}
		p.env = append(p.env, env...)
	}
	p.env = append(p.env, ro.env...)
	if ro.memory != "" {
		if p.memory, err = parseMemory(ro.memory); err != nil {
			return p, err
		}
	}
	for _, opt := range ro.securityOpts {
		if err := p.securityOpt(opt); err != nil {
			return p, err
		}
	}
	return p, nil
}

// securityOpt applies one --security-opt.
func (p *runPlan) securityOpt(opt string) error {
	key, value, _ := strings.Cut(opt, "=")
	switch {
	case key == "seccomp" && value != "":
		if value != "unconfined" {
			if _, err := os.Stat(value); err != nil {
				return fmt.Errorf("--security-opt %s: seccomp profile: %w", opt, err)
			}
		}
		p.seccomp = value
	case strings.HasPrefix(opt, "no-new-privileges"):
		switch strings.TrimLeft(strings.TrimPrefix(opt, "no-new-privileges"), ":=") {
		case "", "true":
			p.noNewPrivileges = true
		case "false":
			p.noNewPrivileges = false
		default:
			return fmt.Errorf("invalid --security-opt %q: no-new-privileges takes true or false: %w", opt, errdefs.ErrInvalidArgument)
		}
	default:
		return fmt.Errorf("unsupported --security-opt %q: use seccomp=unconfined, seccomp=PROFILE.json or no-new-privileges: %w",
			opt, errdefs.ErrNotImplemented)
	}
	return nil
}

// readEnvFile reads docker's --env-file format: KEY=VALUE lines, a bare
// KEY taking berth's own value, blank lines and # comments skipped.
func readEnvFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--env-file: %w", err)
	}
	defer f.Close()
	var env []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimLeft(sc.Text(), " \t")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if key, _, _ := strings.Cut(line, "="); key == "" || strings.ContainsAny(key, " \t") {
			return nil, fmt.Errorf("--env-file %s line %d: %q is not KEY=VALUE: %w", path, n, line, errdefs.ErrInvalidArgument)
		}
		env = append(env, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--env-file %s: %w", path, err)
	}
	return env, nil
}

var memoryPattern = regexp.MustCompile(`^(\d+(?:\.\d+)?) ?([kKmMgGtT]?)(?:[iI]?[bB])?$`)

// parseMemory reads a size in docker's -m form, binary units: 512k, 64m,
// 1.5g, 1GiB; a bare number is bytes.
func parseMemory(s string) (int64, error) {
	m := memoryPattern.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("invalid --memory %q: give bytes or a size such as 64m or 1g: %w", s, errdefs.ErrInvalidArgument)
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("invalid --memory %q: %w", s, errdefs.ErrInvalidArgument)
	}
	shift := map[string]uint{"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[strings.ToLower(m[2])]
	bytes := n * float64(uint64(1)<<shift)
	if bytes >= math.MaxInt64 || bytes < 1 {
		return 0, fmt.Errorf("invalid --memory %q: out of range: %w", s, errdefs.ErrInvalidArgument)
	}
	return int64(bytes), nil
}
