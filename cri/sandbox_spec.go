package cri

import (
	"context"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/cri/imagestore"
	"github.com/berth-dev/berth/oci"
	"github.com/berth-dev/berth/runtime/handler"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Annotations of the pause and container specs, containerd's names:
// runtimes that run a pod in one sandbox (gVisor's runsc, Kata) tell the
// pause container from the others and group them by these.
const (
	annotationContainerType    = "io.kubernetes.cri.container-type"
	annotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	annotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	annotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	annotationSandboxUID       = "io.kubernetes.cri.sandbox-uid"
	annotationSandboxLogDir    = "io.kubernetes.cri.sandbox-log-directory"
	annotationContainerName    = "io.kubernetes.cri.container-name"
	annotationImageName        = "io.kubernetes.cri.image-name"
	containerTypeSandbox       = "sandbox"
	containerTypeContainer     = "container"
)

// sandboxOOMScoreAdj is the pause process's oom_score_adj, the kubelet's
// and containerd's: the last process of the node to be killed.
const sandboxOOMScoreAdj = -998

// sandboxSpec is the pause container's runtime spec: the sandbox image's
// command, read-only root, the pod's hostname, network namespace (or
// the host's), IPC, PID, sysctls, cgroup and security context.
func (s *Service) sandboxSpec(ctx context.Context, sb *sandbox, img imagestore.Image, h *handler.Handler) (*specs.Spec, error) {
	cfg := sb.config
	sc := cfg.GetLinux().GetSecurityContext()
	opts := []oci.SpecOpt{oci.WithImageConfig(img.Spec.Config), oci.WithRootfs("rootfs", true), oci.WithNoNewPrivileges(true)}
	if len(img.Spec.Config.Entrypoint)+len(img.Spec.Config.Cmd) == 0 {
		return nil, fmt.Errorf("sandbox image %s has no command to run: %w", s.cfg.SandboxImage, errdefs.ErrInvalidArgument)
	}
	if h := cfg.GetHostname(); h != "" {
		opts = append(opts, oci.WithHostname(h))
	}
	if sb.hostNetwork() {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostNamespace(specs.UTSNamespace))
	} else {
		opts = append(opts, oci.WithNetNSPath(sb.meta.NetNS))
	}
	if sb.hostPID() {
		opts = append(opts, oci.WithHostNamespace(specs.PIDNamespace))
	}
	if sb.hostIPC() {
		opts = append(opts, oci.WithHostNamespace(specs.IPCNamespace))
	} else {
		opts = append(opts, oci.WithMounts(shmMount(s.shmPath(sb.meta.ID))))
	}
	opts = append(opts, oci.WithSysctls(cfg.GetLinux().GetSysctls()))
	user, err := sandboxUser(sc)
	if err != nil {
		return nil, err
	}
	if user != nil {
		opts = append(opts, oci.WithUser(*user))
	}
	if sc.GetPrivileged() {
		opts = append(opts, oci.WithPrivileged())
	}
	seccomp, err := seccompOpt(sc.GetSeccomp(), sc.GetSeccompProfilePath(), sc.GetPrivileged())
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		seccomp,
		oci.WithCgroupsPath(s.cgroupsPath(cfg.GetLinux().GetCgroupParent(), sb.meta.ID, h)),
		oci.WithOOMScoreAdj(s.oomScoreAdj(sandboxOOMScoreAdj)),
		oci.WithAnnotations(sandboxAnnotations(sb)),
	)
	return oci.GenerateSpec(ctx, Namespace, sb.meta.ID, opts...)
}

func sandboxAnnotations(sb *sandbox) map[string]string {
	m := sb.config.GetMetadata()
	return map[string]string{
		annotationContainerType:    containerTypeSandbox,
		annotationSandboxID:        sb.meta.ID,
		annotationSandboxName:      m.GetName(),
		annotationSandboxNamespace: m.GetNamespace(),
		annotationSandboxUID:       m.GetUid(),
		annotationSandboxLogDir:    sb.config.GetLogDirectory(),
	}
}

// shmMount binds a pod's /dev/shm.
func shmMount(src string) specs.Mount {
	return specs.Mount{Destination: "/dev/shm", Type: "bind", Source: src, Options: []string{"rbind", "rw", "nosuid", "nodev", "noexec"}}
}

// sandboxUser is the pause process's user: run_as_user[:run_as_group],
// nil for the image's.
func sandboxUser(sc *runtime.LinuxSandboxSecurityContext) (*specs.User, error) {
	if sc.GetRunAsUser() == nil {
		return nil, nil
	}
	u := &specs.User{UID: uint32(sc.GetRunAsUser().GetValue())}
	if g := sc.GetRunAsGroup(); g != nil {
		u.GID = uint32(g.GetValue())
	}
	for _, g := range sc.GetSupplementalGroups() {
		u.AdditionalGids = append(u.AdditionalGids, uint32(g))
	}
	return u, nil
}

// seccompOpt chooses the seccomp profile from the CRI's fields: the
// typed profile, else the deprecated path. Unset is unconfined, as the
// CRI defines it; privileged never has one.
func seccompOpt(p *runtime.SecurityProfile, legacy string, privileged bool) (oci.SpecOpt, error) {
	none := func(context.Context, *specs.Spec) error { return nil }
	if privileged {
		return none, nil
	}
	if p != nil {
		switch p.GetProfileType() {
		case runtime.SecurityProfile_RuntimeDefault:
			return none, nil // GenerateSpec's default is the runtime default
		case runtime.SecurityProfile_Unconfined:
			return oci.WithSeccompUnconfined(), nil
		case runtime.SecurityProfile_Localhost:
			return localSeccomp(p.GetLocalhostRef())
		}
	}
	switch {
	case legacy == "" || legacy == "unconfined":
		return oci.WithSeccompUnconfined(), nil
	case legacy == "runtime/default" || legacy == "docker/default":
		return none, nil
	case strings.HasPrefix(legacy, "localhost/"):
		return localSeccomp(strings.TrimPrefix(legacy, "localhost/"))
	}
	return nil, fmt.Errorf("seccomp profile %q: unknown (want runtime/default, unconfined or localhost/<path>): %w", legacy, errdefs.ErrInvalidArgument)
}

func localSeccomp(file string) (oci.SpecOpt, error) {
	if !path.IsAbs(file) {
		return nil, fmt.Errorf("localhost seccomp profile %q: not an absolute path: %w", file, errdefs.ErrInvalidArgument)
	}
	return oci.WithSeccompProfile(file), nil
}

// cgroupsPath is the cgroup of a pod or container: under the kubelet's
// cgroup parent, or /k8s.io/<id> without one; a systemd slice triple when
// the handler runs runc with the systemd driver.
func (s *Service) cgroupsPath(parent, id string, h *handler.Handler) string {
	if h != nil && h.Options["SystemdCgroup"] == true {
		slice := path.Base(parent)
		if parent == "" || slice == "/" {
			slice = "system.slice"
		}
		return slice + ":cri-berth:" + id
	}
	if parent == "" {
		return path.Join("/", Namespace, id)
	}
	return path.Join(parent, id)
}

// oomScoreAdj is adj, raised to berthd's own score when
// restrict_oom_score_adj is set (a runtime without CAP_SYS_RESOURCE
// cannot go below it; oci.WithOOMScoreAdj clamps then too).
func (s *Service) oomScoreAdj(adj int) int {
	if !s.cfg.RestrictOOMScoreAdj {
		return adj
	}
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return adj
	}
	cur, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return adj
	}
	return max(adj, cur)
}
