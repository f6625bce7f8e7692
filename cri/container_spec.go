package cri

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/berth-dev/berth/cri/imagestore"
	"github.com/berth-dev/berth/oci"
	"github.com/berth-dev/berth/runtime/handler"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// containerSpec is a container's runtime spec: the image's process as the
// config changes it, the pod's namespaces joined, mounts and devices, the
// security context and resources, under the pod's cgroup.
func (s *Service) containerSpec(ctx context.Context, c *container, sb *sandbox, img imagestore.Image, user specs.User, h *handler.Handler) (*specs.Spec, error) {
	cfg := c.config
	sc := cfg.GetLinux().GetSecurityContext()
	args, err := processArgs(cfg, img)
	if err != nil {
		return nil, err
	}
	hostname, err := sb.hostname()
	if err != nil {
		return nil, err
	}
	opts := []oci.SpecOpt{
		oci.WithImageConfig(img.Spec.Config),
		oci.WithProcessArgs(args...),
		oci.WithEnv(append([]string{"HOSTNAME=" + hostname}, envs(cfg)...)),
		oci.WithTTY(cfg.GetTty()),
		oci.WithUser(user),
		oci.WithRootfs("rootfs", sc.GetReadonlyRootfs()),
	}
	if ownSandbox(h) {
		opts = append(opts, oci.WithHostname(hostname)) // its sandbox has its own UTS
	}
	if wd := cfg.GetWorkingDir(); wd != "" {
		opts = append(opts, oci.WithCwd(wd))
	}
	nsOpts, err := s.podNamespaces(sb, sc.GetNamespaceOptions())
	if err != nil {
		return nil, err
	}
	opts = append(opts, nsOpts...)
	mountOpts, err := s.containerMounts(ctx, sb, c, h)
	if err != nil {
		return nil, err
	}
	opts = append(opts, mountOpts...)
	for _, d := range cfg.GetDevices() {
		opts = append(opts, oci.WithHostDevice(d.GetHostPath(), d.GetContainerPath(), d.GetPermissions()))
	}
	secOpts, err := securityOpts(sc)
	if err != nil {
		return nil, err
	}
	opts = append(opts, secOpts...)
	res := cfg.GetLinux().GetResources()
	opts = append(opts,
		oci.WithResources(linuxResources(res)),
		oci.WithCgroupsPath(s.cgroupsPath(sb.config.GetLinux().GetCgroupParent(), c.meta.ID, h)),
		oci.WithAnnotations(containerAnnotations(c, sb, ownSandbox(h))),
	)
	if adj := res.GetOomScoreAdj(); adj != 0 || s.cfg.RestrictOOMScoreAdj {
		opts = append(opts, oci.WithOOMScoreAdj(s.oomScoreAdj(int(adj))))
	}
	return oci.GenerateSpec(ctx, Namespace, c.meta.ID, opts...)
}

// processArgs are the container's command line, as the kubelet means
// them: command replaces the image's entrypoint (and drops its cmd), args
// replace the image's cmd.
func processArgs(cfg *runtime.ContainerConfig, img imagestore.Image) ([]string, error) {
	command, args := cfg.GetCommand(), cfg.GetArgs()
	if len(command) == 0 {
		command = img.Spec.Config.Entrypoint
		if len(args) == 0 {
			args = img.Spec.Config.Cmd
		}
	}
	out := slices.Concat(command, args)
	if len(out) == 0 {
		return nil, fmt.Errorf("container %q: no command specified (neither the config nor image %s gives one): %w",
			cfg.GetMetadata().GetName(), img.ID, errdefs.ErrInvalidArgument)
	}
	return out, nil
}

func envs(cfg *runtime.ContainerConfig) []string {
	out := make([]string, 0, len(cfg.GetEnvs()))
	for _, kv := range cfg.GetEnvs() {
		out = append(out, kv.GetKey()+"="+string(kv.GetValue()))
	}
	return out
}

// containerAnnotations tell runtimes that group a pod in one sandbox
// which pod the container belongs to; alone (see ownSandbox) it gets the
// pod's names but not the grouping.
func containerAnnotations(c *container, sb *sandbox, alone bool) map[string]string {
	m := sb.config.GetMetadata()
	if alone {
		return map[string]string{
			annotationSandboxName:      m.GetName(),
			annotationSandboxNamespace: m.GetNamespace(),
			annotationSandboxUID:       m.GetUid(),
			annotationContainerName:    c.config.GetMetadata().GetName(),
			annotationImageName:        c.config.GetImage().GetImage(),
		}
	}
	return map[string]string{
		annotationContainerType:    containerTypeContainer,
		annotationSandboxID:        sb.meta.ID,
		annotationSandboxName:      m.GetName(),
		annotationSandboxNamespace: m.GetNamespace(),
		annotationSandboxUID:       m.GetUid(),
		annotationContainerName:    c.config.GetMetadata().GetName(),
		annotationImageName:        c.config.GetImage().GetImage(),
	}
}

// ownSandbox reports whether each container of a pod on handler h runs
// in a gVisor sandbox of its own, joining the pod's network namespace,
// instead of inside the pause container's sandbox. That is the case when
// berth's shim drives runsc (gVisor's containerd-shim-runsc-v1 is not
// installed and no runtime_path names a shim): berth's shim runs one
// container per shim through go-runc, whose `start` reads the runtime's
// output until EOF, and runsc's start of a container inside an existing
// sandbox hands that very output to the sandbox, so the start would never
// return. gVisor's own shim starts such containers itself.
func ownSandbox(h *handler.Handler) bool {
	if h.RuntimeType != handler.RunscV1 || h.RuntimePath != "" {
		return false
	}
	_, err := exec.LookPath("containerd-shim-runsc-v1")
	return err != nil
}

// podNamespaces joins the pod's namespaces, through the pause process:
// network and UTS (or the host's), IPC (or the host's), and PID as the
// container's own option says: POD the pod's, TARGET another container's,
// NODE the host's, CONTAINER its own.
func (s *Service) podNamespaces(sb *sandbox, o *runtime.NamespaceOption) ([]oci.SpecOpt, error) {
	pid := sb.getStatus().Pid
	if pid == 0 {
		return nil, fmt.Errorf("pod %q has no pause process: %w", sb.meta.Name, errdefs.ErrFailedPrecondition)
	}
	ns := func(t string) string { return fmt.Sprintf("/proc/%d/ns/%s", pid, t) }
	var opts []oci.SpecOpt
	if sb.hostNetwork() {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostNamespace(specs.UTSNamespace))
	} else {
		opts = append(opts, oci.WithNamespacePath(specs.NetworkNamespace, ns("net")), oci.WithNamespacePath(specs.UTSNamespace, ns("uts")))
	}
	if sb.hostIPC() {
		opts = append(opts, oci.WithHostNamespace(specs.IPCNamespace))
	} else {
		opts = append(opts, oci.WithNamespacePath(specs.IPCNamespace, ns("ipc")))
	}
	switch o.GetPid() {
	case runtime.NamespaceMode_NODE:
		opts = append(opts, oci.WithHostNamespace(specs.PIDNamespace))
	case runtime.NamespaceMode_POD:
		opts = append(opts, oci.WithNamespacePath(specs.PIDNamespace, ns("pid")))
	case runtime.NamespaceMode_TARGET:
		target, err := s.getContainer(o.GetTargetId())
		if err != nil {
			return nil, fmt.Errorf("PID namespace of target container: %w", err)
		}
		tp := target.getStatus().Pid
		if target.getStatus().State != stateRunning || tp == 0 {
			return nil, fmt.Errorf("PID namespace of target container %q: it is not running: %w", o.GetTargetId(), errdefs.ErrFailedPrecondition)
		}
		opts = append(opts, oci.WithNamespacePath(specs.PIDNamespace, fmt.Sprintf("/proc/%d/ns/pid", tp)))
	}
	return opts, nil
}

// Files of the pod a container gets unless its config mounts them.
const (
	etcHostname   = "/etc/hostname"
	etcHosts      = "/etc/hosts"
	etcResolvConf = "/etc/resolv.conf"
	devShm        = "/dev/shm"
)

// containerMounts are the config's mounts, then the pod's hostname,
// hosts, resolv.conf and /dev/shm where the config mounts nothing.
func (s *Service) containerMounts(ctx context.Context, sb *sandbox, c *container, h *handler.Handler) ([]oci.SpecOpt, error) {
	cfg := c.config
	var mounts []specs.Mount
	var rootPropagation string
	mounted := map[string]bool{}
	for _, m := range cfg.GetMounts() {
		if isImageVolume(m) {
			vm, ok := c.imageVolumes[filepath.Clean(m.GetContainerPath())]
			if !ok {
				return nil, fmt.Errorf("container %q: image volume at %s is not mounted: %w", cfg.GetMetadata().GetName(), m.GetContainerPath(), errdefs.ErrFailedPrecondition)
			}
			mounts = append(mounts, vm)
			mounted[filepath.Clean(m.GetContainerPath())] = true
			continue
		}
		if m.GetRecursiveReadOnly() && !s.features.supportsRRO(ctx, h) {
			return nil, fmt.Errorf("container %q: recursive read-only mount at %s: runtime handler %q does not support it (it needs runc ≥ 1.1 and Linux ≥ 5.12): %w",
				cfg.GetMetadata().GetName(), m.GetContainerPath(), h.Name, errdefs.ErrInvalidArgument)
		}
		sm, prop, err := criMount(m)
		if err != nil {
			return nil, fmt.Errorf("container %q: %w", cfg.GetMetadata().GetName(), err)
		}
		mounts = append(mounts, sm)
		mounted[filepath.Clean(m.GetContainerPath())] = true
		switch {
		case prop == "rshared":
			rootPropagation = "rshared"
		case prop == "rslave" && rootPropagation == "":
			rootPropagation = "rslave"
		}
	}
	ro := cfg.GetLinux().GetSecurityContext().GetReadonlyRootfs()
	id := sb.meta.ID
	for dst, src := range map[string]string{etcHostname: s.hostnamePath(id), etcHosts: s.hostsPath(id), etcResolvConf: s.resolvConfPath(id)} {
		if mounted[dst] {
			continue
		}
		if _, err := os.Stat(src); err != nil {
			continue
		}
		mode := "rw"
		if ro {
			mode = "ro"
		}
		mounts = append(mounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "rprivate", mode}})
	}
	if !mounted[devShm] {
		if sb.hostIPC() {
			mounts = append(mounts, specs.Mount{Destination: devShm, Type: "bind", Source: devShm, Options: []string{"rbind", "rprivate", "rw"}})
		} else {
			mounts = append(mounts, shmMount(s.shmPath(id)))
		}
	}
	slices.SortStableFunc(mounts, func(a, b specs.Mount) int {
		return strings.Count(filepath.Clean(a.Destination), "/") - strings.Count(filepath.Clean(b.Destination), "/")
	})
	opts := []oci.SpecOpt{oci.WithMounts(mounts...)}
	if rootPropagation != "" {
		opts = append(opts, func(_ context.Context, sp *specs.Spec) error {
			if sp.Linux == nil {
				sp.Linux = &specs.Linux{}
			}
			sp.Linux.RootfsPropagation = rootPropagation
			return nil
		})
	}
	return opts, nil
}

// criMount turns a CRI mount into a bind mount: the host path with its
// symbolic links resolved (created as a directory when missing, as the
// kubelet's hostPath volumes expect), read-only or not, and the
// propagation asked for, which the host's mount must allow. A recursive
// read-only mount (runc's "rro": the submounts read-only too) must be
// read-only and private, as the kubelet and containerd require.
func criMount(m *runtime.Mount) (specs.Mount, string, error) {
	dst, src := m.GetContainerPath(), m.GetHostPath()
	if m.GetRecursiveReadOnly() {
		if !m.GetReadonly() {
			return specs.Mount{}, "", fmt.Errorf("recursive read-only mount at %s: readonly is false: %w", dst, errdefs.ErrInvalidArgument)
		}
		if p := m.GetPropagation(); p != runtime.MountPropagation_PROPAGATION_PRIVATE {
			return specs.Mount{}, "", fmt.Errorf("recursive read-only mount at %s: propagation %v, want PROPAGATION_PRIVATE: %w", dst, p, errdefs.ErrInvalidArgument)
		}
	}
	if !filepath.IsAbs(dst) {
		return specs.Mount{}, "", fmt.Errorf("mount of %s: container path %q is not absolute: %w", src, dst, errdefs.ErrInvalidArgument)
	}
	if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(src, 0o755); err != nil {
			return specs.Mount{}, "", fmt.Errorf("mount on %s: create host path %s: %w", dst, src, err)
		}
	}
	resolved, err := filepath.EvalSymlinks(src)
	if err != nil {
		return specs.Mount{}, "", fmt.Errorf("mount on %s: host path %s: %w", dst, src, err)
	}
	mode := []string{"rw"}
	switch {
	case m.GetRecursiveReadOnly():
		mode = []string{"ro", "rro"} // runc makes the bind read-only, then its submounts
	case m.GetReadonly():
		mode = []string{"ro"}
	}
	var prop string
	switch m.GetPropagation() {
	case runtime.MountPropagation_PROPAGATION_PRIVATE:
		prop = "rprivate"
	case runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
		prop = "rslave"
		if err := checkPropagation(resolved, false); err != nil {
			return specs.Mount{}, "", err
		}
	case runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL:
		prop = "rshared"
		if err := checkPropagation(resolved, true); err != nil {
			return specs.Mount{}, "", err
		}
	default:
		return specs.Mount{}, "", fmt.Errorf("mount on %s: unknown propagation %v: %w", dst, m.GetPropagation(), errdefs.ErrInvalidArgument)
	}
	opts := slices.Concat([]string{"rbind", prop}, mode, m.GetMountOptions())
	return specs.Mount{Destination: dst, Type: "bind", Source: resolved, Options: opts}, prop, nil
}

// securityOpts applies the container's security context: privileged,
// capabilities, no_new_privs, masked and read-only paths, seccomp and
// AppArmor (SELinux is left to hosts that have it: berth has no labels).
func securityOpts(sc *runtime.LinuxContainerSecurityContext) ([]oci.SpecOpt, error) {
	var opts []oci.SpecOpt
	if sc.GetPrivileged() {
		opts = append(opts, oci.WithPrivileged())
	} else {
		opts = append(opts, capabilityOpts(sc.GetCapabilities())...)
		if p := sc.GetMaskedPaths(); len(p) > 0 {
			opts = append(opts, oci.WithMaskedPaths(p))
		}
		if p := sc.GetReadonlyPaths(); len(p) > 0 {
			opts = append(opts, oci.WithReadonlyPaths(p))
		}
	}
	if sc.GetNoNewPrivs() {
		opts = append(opts, oci.WithNoNewPrivileges(true))
	}
	seccomp, err := seccompOpt(sc.GetSeccomp(), sc.GetSeccompProfilePath(), sc.GetPrivileged())
	if err != nil {
		return nil, err
	}
	opts = append(opts, seccomp)
	if err := checkAppArmor(sc.GetApparmor(), sc.GetApparmorProfile()); err != nil {
		return nil, err
	}
	return opts, nil
}

// capabilityOpts adds and drops capabilities as containerd's CRI does:
// ALL in add grants every capability, ALL in drop starts from none, then
// the named ones are added and dropped.
func capabilityOpts(c *runtime.Capability) []oci.SpecOpt {
	var opts []oci.SpecOpt
	isAll := func(s string) bool { return strings.EqualFold(s, "ALL") }
	add, drop := c.GetAddCapabilities(), c.GetDropCapabilities()
	if slices.ContainsFunc(add, isAll) {
		opts = append(opts, oci.WithAddedCapabilities("ALL"))
	}
	if slices.ContainsFunc(drop, isAll) {
		opts = append(opts, oci.WithDroppedCapabilities("ALL"))
	}
	if named := slices.DeleteFunc(slices.Clone(add), isAll); len(named) > 0 {
		opts = append(opts, oci.WithAddedCapabilities(named...))
	}
	if named := slices.DeleteFunc(slices.Clone(drop), isAll); len(named) > 0 {
		opts = append(opts, oci.WithDroppedCapabilities(named...))
	}
	return opts
}

// checkAppArmor accepts what needs no AppArmor (unset, runtime default,
// unconfined) and refuses a named profile where AppArmor is off.
func checkAppArmor(p *runtime.SecurityProfile, legacy string) error {
	name := ""
	switch {
	case p != nil && p.GetProfileType() == runtime.SecurityProfile_Localhost:
		name = p.GetLocalhostRef()
	case p == nil && strings.HasPrefix(legacy, "localhost/"):
		name = strings.TrimPrefix(legacy, "localhost/")
	}
	if name == "" {
		return nil
	}
	return fmt.Errorf("AppArmor profile %q: berth does not load AppArmor profiles yet: %w", name, errdefs.ErrNotImplemented)
}

// linuxResources turns the CRI's limits into the spec's.
func linuxResources(r *runtime.LinuxContainerResources) *specs.LinuxResources {
	if r == nil {
		return nil
	}
	out := &specs.LinuxResources{}
	cpu := &specs.LinuxCPU{Cpus: r.GetCpusetCpus(), Mems: r.GetCpusetMems()}
	if v := r.GetCpuPeriod(); v > 0 {
		p := uint64(v)
		cpu.Period = &p
	}
	if v := r.GetCpuQuota(); v > 0 {
		cpu.Quota = &v
	}
	if v := r.GetCpuShares(); v > 0 {
		sh := uint64(v)
		cpu.Shares = &sh
	}
	if cpu.Period != nil || cpu.Quota != nil || cpu.Shares != nil || cpu.Cpus != "" || cpu.Mems != "" {
		out.CPU = cpu
	}
	if v := r.GetMemoryLimitInBytes(); v > 0 {
		out.Memory = &specs.LinuxMemory{Limit: &v}
		if sw := r.GetMemorySwapLimitInBytes(); sw > 0 {
			out.Memory.Swap = &sw
		}
	}
	for _, h := range r.GetHugepageLimits() {
		out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	out.Unified = r.GetUnified()
	return out
}
