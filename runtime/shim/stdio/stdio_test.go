package stdio

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
)

// clientFifo opens a FIFO as the daemon's client does: created, and opened
// without waiting for the other side.
func clientFifo(t *testing.T, path string, flag int) io.ReadWriteCloser {
	t.Helper()
	f, err := fifo.OpenFifo(context.Background(), path, flag|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readAll(t *testing.T, r io.Reader) <-chan string {
	ch := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(r)
		ch <- string(b)
	}()
	return ch
}

func TestCopyPipes(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Stdin: filepath.Join(dir, "in"), Stdout: filepath.Join(dir, "out"), Stderr: "file://" + filepath.Join(dir, "logs", "err.log")}
	in := clientFifo(t, cfg.Stdin, syscall.O_WRONLY)
	out := readAll(t, clientFifo(t, cfg.Stdout, syscall.O_RDONLY))

	rio, err := NewPipes(os.Getuid(), os.Getgid(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "read x; echo got $x; echo oops >&2")
	rio.Set(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := rio.(interface{ CloseAfterStart() error }).CloseAfterStart(); err != nil {
		t.Fatal(err)
	}
	s, err := CopyPipes(rio, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if !s.Wait(5 * time.Second) {
		t.Fatal("output copies did not finish")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-out:
		if got != "got hello\n" {
			t.Errorf("stdout = %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stdout FIFO not closed")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "logs", "err.log")); err != nil || string(b) != "oops\n" {
		t.Errorf("stderr file = %q, %v", b, err)
	}
	if err := s.Resize(80, 24); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Resize without a terminal: %v", err)
	}
}

// Unconnected streams are /dev/null, so that go-runc does not capture
// them in a pipe the container would inherit.
func TestNewPipesFillsNull(t *testing.T) {
	rio, err := NewPipes(0, 0, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer rio.Close()
	cmd := exec.Command("true")
	rio.Set(cmd)
	for name, f := range map[string]any{"stdin": cmd.Stdin, "stdout": cmd.Stdout, "stderr": cmd.Stderr} {
		if file, ok := f.(*os.File); !ok || file.Name() != os.DevNull {
			t.Errorf("%s = %v, want %s", name, f, os.DevNull)
		}
	}
}

func TestUnsupportedScheme(t *testing.T) {
	rio, err := NewPipes(0, 0, Config{Stdout: "binary:///usr/bin/logger"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CopyPipes(rio, Config{Stdout: "binary:///usr/bin/logger"}); !errdefs.IsNotImplemented(err) {
		t.Errorf("binary:// stdout: %v, want NotImplemented", err)
	}
}
