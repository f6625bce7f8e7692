package manager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/log"
)

// trashDir, under the state directory, holds the bundles of deleted tasks
// until they are cleaned up: <trash>/<ns>/<id>.<seq>. Its name is no
// namespace's (identifiers start with a letter or digit), so load never
// takes it for one.
const trashDir = ".trash"

// removeDelay is how long a trashed bundle waits before it is removed. The
// removal's unlinks join the file system's journal, which every sync
// running meanwhile has to commit: removing at once slows down the calls
// that follow a task's deletion (the snapshot's and container's removal,
// each a database sync) by more than the removal itself takes.
const removeDelay = 100 * time.Millisecond

// retire finishes the deletion of task t after its shim deleted the init
// process. The bundle is moved into the trash at once, so that the id is
// free again, and the rest happens in the background: the shim is shut
// down and, once it has closed its socket, a waiting Create of the same
// id may go on; removeDelay later the bundle is removed.
//
// Should berthd die before that is done, the next one finds the bundle in
// the trash and finishes (emptyTrash), or, if it died before the move,
// finds the bundle in place and treats it as the bundle of a task whose
// shim is gone.
func (m *Manager) retire(ctx context.Context, t *Task) {
	key := t.Namespace + "/" + t.ID
	done := make(chan struct{})
	m.mu.Lock()
	if m.tasks[key] == t {
		delete(m.tasks, key)
	}
	m.stopping[key] = done
	m.mu.Unlock()

	trashed, err := m.moveToTrash(t)
	if err != nil {
		log.G(ctx).Warn("bundle not moved to the trash; removing it in place", "bundle", t.Bundle, "error", err)
	}
	release := func() {
		m.mu.Lock()
		if m.stopping[key] == done {
			delete(m.stopping, key)
		}
		m.mu.Unlock()
		close(done)
	}
	m.retiring.Add(1)
	go func() {
		defer m.retiring.Done()
		t.stopShim(ctx)
		if trashed == "" {
			// The bundle is still in place: the id is free only once it
			// is gone.
			t.closeLog()
			removeBundle(ctx, t.Bundle)
			release()
			return
		}
		release()
		t.closeLog()
		select {
		case <-time.After(removeDelay):
		case <-m.closing:
		}
		removeBundle(ctx, trashed)
	}()
}

// moveToTrash renames t's bundle into the trash and returns its new path.
func (m *Manager) moveToTrash(t *Task) (string, error) {
	dir := filepath.Join(m.cfg.State, trashDir, t.Namespace)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	dst := filepath.Join(dir, fmt.Sprintf("%s.%d", t.ID, m.trashSeq.Add(1)))
	if err := os.Rename(t.Bundle, dst); err != nil {
		return "", err
	}
	return dst, nil
}

func (t *Task) closeLog() {
	if t.log != nil {
		_ = t.log.Close()
	}
}

// emptyTrash finishes the clean-ups a previous berthd left in the trash,
// all at once: each bundle's shim, if it still answers, is shut down, and
// the bundle is unmounted and removed. Its task was deleted already, so
// nothing is published.
func (m *Manager) emptyTrash(ctx context.Context) {
	root := filepath.Join(m.cfg.State, trashDir)
	var bundles []*Task
	nss, _ := os.ReadDir(root)
	for _, ns := range nss {
		entries, _ := os.ReadDir(filepath.Join(root, ns.Name()))
		for _, e := range entries {
			id := e.Name()
			if i := strings.LastIndexByte(id, '.'); i > 0 {
				id = id[:i]
			}
			bundles = append(bundles, &Task{ID: id, Namespace: ns.Name(), Bundle: filepath.Join(root, ns.Name(), e.Name()), m: m})
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, loadParallelism)
	for _, t := range bundles {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := t.connectRecorded(); err == nil {
				t.stopShim(ctx)
			} else if !errors.Is(err, os.ErrNotExist) {
				log.G(ctx).Debug("trashed bundle's shim gone", "bundle", t.Bundle, "error", err)
			}
			removeBundle(ctx, t.Bundle)
		}()
	}
	wg.Wait()
	for _, ns := range nss {
		_ = os.Remove(filepath.Join(root, ns.Name())) // fails while a bundle is left
	}
}
