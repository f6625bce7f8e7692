package manager

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-dev/berth/log"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
)

// binaryFile records, in the bundle, which shim binary runs the task, so
// that a restarted berthd can run its `delete` should the shim be gone.
const binaryFile = "shim-binary-path"

// load reconnects to the shims of the bundles a previous berthd left: a
// shim that answers is tracked again; for one that does not, its binary's
// `delete` cleans up and the bundle is removed.
func (m *Manager) load(ctx context.Context) {
	nss, _ := os.ReadDir(m.cfg.State)
	for _, ns := range nss {
		ids, _ := os.ReadDir(filepath.Join(m.cfg.State, ns.Name()))
		for _, id := range ids {
			t, err := m.reconnect(ctx, ns.Name(), id.Name())
			if err != nil {
				log.G(ctx).Warn("task not restored", "namespace", ns.Name(), "id", id.Name(), "error", err)
				continue
			}
			m.tasks[ns.Name()+"/"+id.Name()] = t
			log.G(ctx).Info("task restored", "namespace", ns.Name(), "id", id.Name(), "pid", t.Pid)
		}
	}
}

func (m *Manager) reconnect(ctx context.Context, ns, id string) (*Task, error) {
	bundle := filepath.Join(m.cfg.State, ns, id)
	t := &Task{ID: id, Namespace: ns, Bundle: bundle, m: m}
	binary, err := os.ReadFile(filepath.Join(bundle, binaryFile))
	if err != nil {
		t.cleanup(ctx)
		return nil, fmt.Errorf("bundle without shim binary, removed: %w", err)
	}
	t.binary = string(binary)
	if f, err := os.OpenFile(filepath.Join(bundle, "log"), os.O_RDWR, 0); err == nil {
		t.log = f
		go copyLog(log.G(ctx).With("bundle", bundle), f)
	}
	st, err := t.restore()
	if err != nil {
		if t.client != nil {
			_ = t.client.Close()
			t.task, t.client = nil, nil
		}
		if _, derr := t.deleteDead(ctx); derr != nil {
			log.G(ctx).Warn("shim delete failed", "bundle", bundle, "error", derr)
		}
		t.cleanup(ctx)
		return nil, fmt.Errorf("shim gone, task cleaned up: %w", err)
	}
	t.Pid = st.Pid
	return t, nil
}

// restore connects to the address the shim wrote and asks for the task's
// state.
func (t *Task) restore() (*taskapi.StateResponse, error) {
	address, err := os.ReadFile(filepath.Join(t.Bundle, "address"))
	if err != nil {
		return nil, err
	}
	if err := t.connect(strings.TrimSpace(string(address))); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(t.ShimContext(context.Background()), 5*time.Second)
	defer cancel()
	st, err := t.task.State(ctx, &taskapi.StateRequest{ID: t.ID})
	if err != nil {
		return nil, ShimError(err)
	}
	return st, nil
}
