// Package oom tells the shim when a container's memory cgroup ran out of
// memory and the kernel killed a process in it, for the /tasks/oom event.
//
// A Watcher follows the memory cgroup of one process, found from
// /proc/<pid>/cgroup and the host's cgroup mounts: on cgroup v1 (also the
// hybrid layout, where the memory controller is on a v1 hierarchy) through
// an eventfd registered for memory.oom_control in cgroup.event_control; on
// cgroup v2 through inotify on memory.events. Either way the kernel only
// says "look": the Watcher then reads the oom_kill counter
// (memory.oom_control or memory.events) and reports each increase once, so
// that a wake-up for another reason (the cgroup's removal, a change of
// another memory.events field) reports nothing. cgroup v1 notifies when the
// cgroup enters OOM, before the kill is done and counted, so a v1 wake-up
// watches the counter for a moment (settleV1). A v1 kernel without the
// counter (before 4.13) has each wake-up of a live cgroup reported.
//
// Lifecycle: Watch once the process is in its cgroup (after runc create);
// Check whenever the caller needs the news now (the shim checks before it
// publishes the init's exit, so that /tasks/oom comes first); Close when
// the container is deleted. The callback runs on the Watcher's goroutine or
// in Check, once per increase, and never after Close returns.
package oom

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// settleV1 is how long a v1 wake-up waits for the kill to be counted. The
// kernel kills right after it notifies, in the same allocation.
const settleV1 = 500 * time.Millisecond

// Watcher follows one memory cgroup.
type Watcher struct {
	file    *os.File // eventfd (v1) or inotify (v2) descriptor, pollable
	counter string   // the file with the oom_kill counter
	settle  time.Duration
	onOOM   func()
	done    chan struct{}

	mu      sync.Mutex
	last    uint64
	counted bool // the kernel keeps the counter
	closed  bool
}

// Watch starts watching the memory cgroup of pid; onOOM is called for each
// OOM kill in it.
func Watch(pid int, onOOM func()) (*Watcher, error) {
	procCgroup, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, fmt.Errorf("oom: cgroup of pid %d: %w", pid, err)
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("oom: %w", err)
	}
	cg, err := Locate(procCgroup, mountinfo)
	if err != nil {
		return nil, fmt.Errorf("oom: pid %d: %w", pid, err)
	}
	return WatchCgroup(cg, onOOM)
}

// WatchCgroup starts watching the memory cgroup cg.
func WatchCgroup(cg Cgroup, onOOM func()) (*Watcher, error) {
	w := &Watcher{onOOM: onOOM, done: make(chan struct{})}
	var err error
	if cg.V2 {
		w.counter = filepath.Join(cg.Dir, "memory.events")
		w.file, err = watchEvents(w.counter)
	} else {
		w.counter = filepath.Join(cg.Dir, "memory.oom_control")
		w.settle = settleV1
		w.file, err = registerEventfd(cg.Dir)
	}
	if err != nil {
		return nil, fmt.Errorf("oom: watch %s: %w", cg.Dir, err)
	}
	w.last, w.counted, _ = readCounter(w.counter)
	go w.loop()
	return w, nil
}

// registerEventfd asks for an eventfd notification on each OOM of the v1
// memory cgroup dir.
func registerEventfd(dir string) (*os.File, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	f := os.NewFile(uintptr(efd), "oom-eventfd")
	control, err := os.Open(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		f.Close()
		return nil, err
	}
	defer control.Close()
	line := fmt.Sprintf("%d %d", efd, control.Fd())
	if err := os.WriteFile(filepath.Join(dir, "cgroup.event_control"), []byte(line), 0); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// watchEvents watches a v2 memory.events file for changes.
func watchEvents(path string) (*os.File, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	f := os.NewFile(uintptr(fd), "oom-inotify")
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_MODIFY); err != nil {
		f.Close()
		return nil, fmt.Errorf("inotify %s: %w", path, err)
	}
	return f, nil
}

// loop checks the counter on each wake-up, until Close or the cgroup's
// removal.
func (w *Watcher) loop() {
	defer close(w.done)
	buf := make([]byte, 4096) // room for inotify events; eventfd needs 8
	for {
		if _, err := w.file.Read(buf); err != nil {
			return
		}
		if !w.wake() {
			return
		}
	}
}

// wake checks the counter until it moves or the settle time is up. It
// reports whether to go on watching.
func (w *Watcher) wake() bool {
	deadline := time.Now().Add(w.settle)
	for {
		reported, alive := w.check(true)
		if !alive {
			return false
		}
		if reported || !time.Now().Before(deadline) {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Check reads the counter now and reports an increase since the last look.
func (w *Watcher) Check() {
	w.check(false)
}

// check reports whether it found news, and whether the cgroup is still
// there (and the Watcher open).
func (w *Watcher) check(wakeup bool) (reported, alive bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false, false
	}
	n, counted, err := readCounter(w.counter)
	if err != nil {
		return false, false // removed
	}
	switch {
	case counted && n > w.last:
		w.last = n
		w.onOOM()
		return true, true
	case !counted && !w.counted && wakeup:
		w.onOOM()
		return true, true
	}
	return false, true
}

// Close stops the watch; no callback runs after it returns.
func (w *Watcher) Close() error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	err := w.file.Close()
	<-w.done
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

// readCounter reads the oom_kill line of a flat keyed file; counted is
// false if the file has none.
func readCounter(path string) (n uint64, counted bool, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false, err
	}
	for line := range bytes.Lines(data) {
		key, value, ok := bytes.Cut(bytes.TrimSpace(line), []byte(" "))
		if ok && string(key) == "oom_kill" {
			n, err := strconv.ParseUint(string(bytes.TrimSpace(value)), 10, 64)
			return n, err == nil, nil
		}
	}
	return 0, false, nil
}
