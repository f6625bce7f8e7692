package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
)

// hostLeaks is what a daemon's containers can leave on the host: shim
// processes, mounts under its state and root, bundle directories and
// overlay snapshot directories.
type hostLeaks struct {
	shims, mounts, bundles, snapshots int
}

func (d *daemon) leaks(t *testing.T, ns string) hostLeaks {
	t.Helper()
	var l hostLeaks
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 0 && strings.Contains(args[0], "shim") && strings.Contains(string(cmdline), d.Address) {
			l.shims++
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, d.State) || strings.Contains(line, d.Root) {
			l.mounts++
		}
	}
	bundles, _ := os.ReadDir(filepath.Join(d.State, "io.containerd.runtime.v2.task", ns))
	l.bundles = len(bundles)
	snaps, _ := os.ReadDir(filepath.Join(d.Root, "io.containerd.snapshotter.v1.overlayfs", "snapshots"))
	l.snapshots = len(snaps)
	return l
}

// fdCount is the number of open file descriptors of berthd.
func (d *daemon) fdCount(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.pid()))
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// TestRecoveryAfterKill: berthd is SIGKILLed while 20 containers run and
// one is about to exit; after a restart all 20 still run and are listed,
// the one that exited while berthd was down reports its real exit code,
// and once every container is removed nothing is left on the host.
func TestRecoveryAfterKill(t *testing.T) {
	d := startDaemon(t)
	buildShim(t)
	const ns, img, n = "recovery", "docker.io/library/bbtest:latest", 20
	t.Cleanup(func() { removeHostState(ns) })
	importImage(t, d, ns, buildBusybox(t, img))
	before := d.leaks(t, ns)

	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := d.ctr("-n", ns, "run", "-d", img, fmt.Sprintf("r%02d", i), "sleep", "1000"); r.code != 0 {
				errs <- fmt.Errorf("run r%02d: %v", i, r)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	d.mustCtr("-n", ns, "run", "-d", img, "exiter", "sh", "-c", "sleep 2; exit 42")
	pids := map[string]string{}
	for i := range n {
		id := fmt.Sprintf("r%02d", i)
		pid, status := taskStatus(t, d, ns, id)
		if status != "RUNNING" {
			t.Fatalf("%s is %q before the kill", id, status)
		}
		pids[id] = pid
	}

	d.kill()
	time.Sleep(3 * time.Second) // exiter exits while berthd is down
	d.start()

	for id, pid := range pids {
		if got, status := taskStatus(t, d, ns, id); got != pid || status != "RUNNING" {
			t.Errorf("%s after restart: pid %q status %q, want %s RUNNING", id, got, status, pid)
		}
	}
	eventually(t, 10*time.Second, func() error {
		resp, err := tasksapi.NewTasksClient(d.client()).Get(nsContext(t, ns, ""), &tasksapi.GetRequest{ContainerID: "exiter"})
		if err != nil {
			return err
		}
		if p := resp.GetProcess(); p.GetStatus() != task.Status_STOPPED || p.GetExitStatus() != 42 {
			return fmt.Errorf("exiter: status %v exit %d, want STOPPED 42", p.GetStatus(), p.GetExitStatus())
		}
		return nil
	})

	for id := range pids {
		d.mustCtr("-n", ns, "task", "kill", "-s", "9", id)
	}
	for _, id := range append(keys(pids), "exiter") {
		eventually(t, 10*time.Second, func() error {
			if _, status := taskStatus(t, d, ns, id); status != "STOPPED" {
				return fmt.Errorf("%s is %q, not STOPPED", id, status)
			}
			return nil
		})
		d.mustCtr("-n", ns, "task", "rm", id)
		d.mustCtr("-n", ns, "containers", "rm", id)
	}
	eventually(t, 10*time.Second, func() error {
		if after := d.leaks(t, ns); after != before {
			return fmt.Errorf("host leaks after removing everything: %+v, before %+v", after, before)
		}
		return nil
	})
}

func keys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestRunCyclesLeakNothing: 200 sequential `ctr run --rm` cycles leave no
// mount, shim, bundle, snapshot directory or berthd file descriptor.
func TestRunCyclesLeakNothing(t *testing.T) {
	d := startDaemon(t)
	buildShim(t)
	const ns, img, cycles = "cycles", "docker.io/library/bbtest:latest", 200
	t.Cleanup(func() { removeHostState(ns) })
	importImage(t, d, ns, buildBusybox(t, img))
	// One cycle first, so lazily opened files (the ttrpc socket's first
	// connection, the snapshotter's) are counted in the baseline.
	d.mustCtr("-n", ns, "run", "--rm", img, "warm", "sh", "-c", "exit 0")
	before, fds := d.leaks(t, ns), d.fdCount(t)
	for i := range cycles {
		if r := d.ctr("-n", ns, "run", "--rm", img, fmt.Sprintf("c%03d", i), "sh", "-c", "exit 0"); r.code != 0 {
			t.Fatalf("cycle %d: %v", i, r)
		}
	}
	eventually(t, 10*time.Second, func() error {
		if after := d.leaks(t, ns); after != before {
			return fmt.Errorf("after %d cycles: %+v, before %+v", cycles, after, before)
		}
		if got := d.fdCount(t); got > fds {
			return fmt.Errorf("berthd has %d fds after %d cycles, %d before", got, cycles, fds)
		}
		return nil
	})
	if out := d.mustCtr("-n", ns, "containers", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("containers left: %s", out)
	}
}
