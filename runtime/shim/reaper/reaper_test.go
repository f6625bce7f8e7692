package reaper

import (
	"os"
	"os/exec"
	"os/signal"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newTestReaper makes the test process a subreaper whose SIGCHLD runs Reap.
func newTestReaper(t *testing.T) *Reaper {
	t.Helper()
	if err := SetSubreaper(); err != nil {
		t.Fatal(err)
	}
	r := New()
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, unix.SIGCHLD)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-sigs:
				r.Reap()
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() {
		signal.Stop(sigs)
		close(done)
	})
	return r
}

func TestWaitStatus(t *testing.T) {
	r := newTestReaper(t)
	for _, tc := range []struct {
		script string
		want   int
	}{
		{"exit 3", 3},
		{"true", 0},
		{"kill -9 $$", 137},
		{"kill -15 $$", 143},
	} {
		cmd := exec.Command("sh", "-c", tc.script)
		ec, err := r.Start(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := r.Wait(cmd, ec); got != tc.want {
			t.Errorf("%q: status %d, want %d", tc.script, got, tc.want)
		}
		cmd = exec.Command("sh", "-c", tc.script)
		ec, err = r.StartLocked(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := r.Wait(cmd, ec); got != tc.want {
			t.Errorf("%q, locked: status %d, want %d", tc.script, got, tc.want)
		}
	}
}

// A grandchild orphaned by its parent is re-parented to the subreaper, and
// its exit, which no command waits for, comes out of Exits.
func TestOrphanExit(t *testing.T) {
	r := newTestReaper(t)
	cmd := exec.Command("sh", "-c", "sh -c 'sleep 0.2; exit 7' & echo $!")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	ec, err := r.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 32)
	n, _ := out.Read(buf)
	var pid int
	for _, c := range buf[:n] {
		if c >= '0' && c <= '9' {
			pid = pid*10 + int(c-'0')
		}
	}
	if status, _ := r.Wait(cmd, ec); status != 0 {
		t.Fatalf("parent status %d", status)
	}
	select {
	case e := <-r.Exits():
		if e.Pid != pid || e.Status != 7 {
			t.Errorf("orphan exit = %+v, want pid %d status 7", e, pid)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no exit for the orphan")
	}
}
