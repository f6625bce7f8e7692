package manager

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	eventsapi "github.com/containerd/containerd/api/events"

	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/namespaces"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
)

// binaryFile records, in the bundle, which shim binary runs the task, so
// that a restarted berthd can run its `delete` should the shim be gone.
const binaryFile = "shim-binary-path"

// load reconnects to the shims of the bundles a previous berthd left, all
// at once: a shim that answers is tracked again; for one that does not,
// its binary's `delete` cleans up, the bundle is removed and /tasks/exit
// is published with the status `delete` recovered.
func (m *Manager) load(ctx context.Context) {
	type found struct{ ns, id string }
	var bundles []found
	nss, _ := os.ReadDir(m.cfg.State)
	for _, ns := range nss {
		if ns.Name() == trashDir {
			continue
		}
		ids, _ := os.ReadDir(filepath.Join(m.cfg.State, ns.Name()))
		for _, id := range ids {
			bundles = append(bundles, found{ns.Name(), id.Name()})
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, loadParallelism)
	for _, b := range bundles {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			t, err := m.reconnect(ctx, b.ns, b.id)
			if err != nil {
				log.G(ctx).Warn("task not restored", "namespace", b.ns, "id", b.id, "error", err)
				return
			}
			m.mu.Lock()
			m.tasks[b.ns+"/"+b.id] = t
			m.mu.Unlock()
			log.G(ctx).Info("task restored", "namespace", b.ns, "id", b.id, "pid", t.Pid)
		}()
	}
	wg.Wait()
}

// loadParallelism bounds the shims contacted at once at start-up.
const loadParallelism = 16

func (m *Manager) reconnect(ctx context.Context, ns, id string) (*Task, error) {
	bundle := filepath.Join(m.cfg.State, ns, id)
	t := &Task{ID: id, Namespace: ns, Bundle: bundle, m: m}
	if err := t.readRecord(); err != nil {
		t.cleanup(ctx)
		return nil, fmt.Errorf("bundle without shim binary, removed: %w", err)
	}
	if f, err := os.OpenFile(filepath.Join(bundle, "log"), os.O_RDWR, 0); err == nil {
		t.log = f
		go copyLog(log.G(ctx).With("bundle", bundle), f)
	}
	st, err := t.restore()
	if err != nil {
		// A shim that answers without the task (berthd died between the
		// shim's delete and its shutdown) is stopped; one that still has
		// it ignores the request.
		t.stopShim(ctx)
		t.task, t.client = nil, nil
		if resp, derr := t.deleteDead(ctx); derr != nil {
			log.G(ctx).Warn("shim delete failed", "bundle", bundle, "error", derr)
		} else {
			m.publishExit(ctx, t, resp)
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
	if err := t.connectRecorded(); err != nil {
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

// connectRecorded connects to the address in the bundle's `address` file.
func (t *Task) connectRecorded() error {
	address, err := os.ReadFile(filepath.Join(t.Bundle, "address"))
	if err != nil {
		return err
	}
	return t.connect(strings.TrimSpace(string(address)))
}

// publishExit tells subscribers that a task whose shim died has exited,
// with what the shim's `delete` recovered (runc's state, or 137 when the
// process was killed with its shim).
func (m *Manager) publishExit(ctx context.Context, t *Task, resp *taskapi.DeleteResponse) {
	if m.cfg.Publisher == nil {
		return
	}
	ev := &eventsapi.TaskExit{ContainerID: t.ID, ID: t.ID, Pid: resp.GetPid(), ExitStatus: resp.GetExitStatus(), ExitedAt: resp.GetExitedAt()}
	if err := m.cfg.Publisher.Publish(namespaces.WithNamespace(ctx, t.Namespace), TopicExit, ev); err != nil {
		log.G(ctx).Warn("publish exit", "namespace", t.Namespace, "id", t.ID, "error", err)
	}
}

// TopicExit is containerd's topic for a task's exit.
const TopicExit = "/tasks/exit"
