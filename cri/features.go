package cri

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"slices"
	"sync"
	"time"

	"github.com/berth-dev/berth/runtime/handler"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// featureProbe learns, once per OCI runtime binary, which optional
// features a runtime handler can announce in Status. Its zero value is
// ready to use.
type featureProbe struct {
	mu  sync.Mutex
	rro map[string]bool
}

// handlerFeatures is what the handler supports: recursive read-only
// mounts when it is runc's shim, its binary lists the "rro" mount option
// in `<binary> features` and the kernel has mount_setattr(2) (5.12), as
// containerd's CRI decides. User namespaces are not announced: they need
// idmapped mounts, which runc 1.1 lacks.
func (p *featureProbe) handlerFeatures(ctx context.Context, h *handler.Handler) *runtime.RuntimeHandlerFeatures {
	return &runtime.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: p.supportsRRO(ctx, h)}
}

// supportsRRO answers for the handler, probing its binary the first time.
func (p *featureProbe) supportsRRO(ctx context.Context, h *handler.Handler) bool {
	if h == nil || h.RuntimeType != handler.RuncV2 {
		return false
	}
	bin := "runc"
	if b, ok := h.Options["BinaryName"].(string); ok && b != "" {
		bin = b
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if ok, probed := p.rro[bin]; probed {
		return ok
	}
	ok := kernelHasMountSetattr() && runtimeMountOption(ctx, bin, "rro")
	if p.rro == nil {
		p.rro = map[string]bool{}
	}
	p.rro[bin] = ok
	return ok
}

// runtimeMountOption reports whether `<bin> features` (runc ≥ 1.1, crun)
// lists the mount option. A binary that is missing or has no features
// command supports nothing optional.
func runtimeMountOption(ctx context.Context, bin, option string) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "features").Output()
	if err != nil {
		return false
	}
	var f struct {
		MountOptions []string `json:"mountOptions"`
	}
	if json.Unmarshal(out, &f) != nil {
		return false
	}
	return slices.Contains(f.MountOptions, option)
}

// kernelHasMountSetattr calls mount_setattr(2) on a bad descriptor: a
// kernel that has the call answers EBADF, an older one ENOSYS.
func kernelHasMountSetattr() bool {
	err := unix.MountSetattr(-1, "", 0, &unix.MountAttr{})
	return !errors.Is(err, unix.ENOSYS)
}
