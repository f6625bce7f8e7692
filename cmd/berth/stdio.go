package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/fifo"
)

// fifoRoot is where foreground processes get their FIFOs, as ctr's go
// under /run/containerd/fifo.
const fifoRoot = "/run/berth/fifo"

// outputDrain bounds the wait for a process's last output after it exited:
// the shim closes its ends of the FIFOs before it reports the exit.
const outputDrain = 2 * time.Second

// attachment is the client side of a foreground process's stdio: FIFOs
// in a temporary directory, which the shim opens, copied to and from the
// CLI's own streams.
//
// Lifecycle: newAttachment before the task or exec is created (its paths
// go into the request); copy once it is created; wait after it exited;
// close always.
type attachment struct {
	dir                   string
	stdin, stdout, stderr string // FIFO paths, "" when not connected
	tty                   bool

	in       io.ReadWriteCloser
	out, err io.ReadWriteCloser
	outputs  sync.WaitGroup
}

// newAttachment creates the FIFOs of a process of container id: stdout,
// stderr unless tty (a terminal merges them), stdin when withStdin.
func newAttachment(ctx context.Context, id string, withStdin, tty bool) (at *attachment, err error) {
	if err := os.MkdirAll(fifoRoot, 0o700); err != nil {
		return nil, fmt.Errorf("create FIFO directory: %w", err)
	}
	dir, err := os.MkdirTemp(fifoRoot, shortID(id)+"-")
	if err != nil {
		return nil, fmt.Errorf("create FIFO directory: %w", err)
	}
	at = &attachment{dir: dir, tty: tty}
	defer func() {
		if err != nil {
			at.close()
		}
	}()
	// O_NONBLOCK: the open completes in the background once the shim
	// opens the other end.
	flags := syscall.O_CREAT | syscall.O_NONBLOCK
	at.stdout = filepath.Join(dir, "stdout")
	if at.out, err = fifo.OpenFifo(ctx, at.stdout, flags|syscall.O_RDONLY, 0o600); err != nil {
		return nil, fmt.Errorf("open stdout FIFO: %w", err)
	}
	if !tty {
		at.stderr = filepath.Join(dir, "stderr")
		if at.err, err = fifo.OpenFifo(ctx, at.stderr, flags|syscall.O_RDONLY, 0o600); err != nil {
			return nil, fmt.Errorf("open stderr FIFO: %w", err)
		}
	}
	if withStdin {
		at.stdin = filepath.Join(dir, "stdin")
		if at.in, err = fifo.OpenFifo(ctx, at.stdin, flags|syscall.O_WRONLY, 0o600); err != nil {
			return nil, fmt.Errorf("open stdin FIFO: %w", err)
		}
	}
	return at, nil
}

// copy starts copying the process's output to stdout and stderr and, if
// it has stdin, in to it; closeStdin runs when in reaches its end.
func (at *attachment) copy(in io.Reader, stdout, stderr io.Writer, closeStdin func()) {
	at.outputs.Add(1)
	go func() {
		defer at.outputs.Done()
		_, _ = io.Copy(stdout, at.out)
	}()
	if at.err != nil {
		at.outputs.Add(1)
		go func() {
			defer at.outputs.Done()
			_, _ = io.Copy(stderr, at.err)
		}()
	}
	if at.in != nil && in != nil {
		go func() {
			_, _ = io.Copy(at.in, in)
			_ = at.in.Close()
			closeStdin()
		}()
	}
}

// wait waits up to timeout for the output copies to end.
func (at *attachment) wait(timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		at.outputs.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
	}
}

// close closes the FIFOs and removes their directory.
func (at *attachment) close() {
	for _, f := range []io.Closer{at.in, at.out, at.err} {
		if f != nil {
			_ = f.Close()
		}
	}
	_ = os.RemoveAll(at.dir)
}
