package stdio

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
)

// A logging binary is what containerd's shims start for a binary:// URI,
// with the same protocol, so that loggers written for containerd work:
//
//   - binary:///path/to/logger?key=value&flag runs /path/to/logger with the
//     arguments "key" "value" "flag" (each query key, then its first value
//     if it has one; keys sorted, where containerd's order is random);
//     query keys "env.NAME=value" set environment variables instead;
//   - its environment is CONTAINER_ID and CONTAINER_NAMESPACE, and nothing
//     else the shim has;
//   - file descriptor 3 reads the process's stdout, 4 its stderr, and 5 is
//     the write end of a pipe the logger closes (or writes a byte to) once
//     it is ready; the process is started only then;
//   - it reads until EOF, which comes when every process holding the
//     container's output has exited; SIGTERM asks it to finish early.
//
// The logger is the shim's child and is reaped through go-runc's Monitor
// (the shim's reaper).

// LoggerReadyTimeout bounds the wait for a logging binary's ready signal:
// a logger that never gives it must not hang Create forever.
var LoggerReadyTimeout = 10 * time.Second

// loggerStopTimeout is how long a logger may take to finish after SIGTERM
// before it is killed.
const loggerStopTimeout = 5 * time.Second

// logger is a running logging binary.
type logger struct {
	cmd    *exec.Cmd
	exited chan struct{}

	mu             sync.Mutex
	stdout, stderr *os.File // write ends the process gets, until it took them
}

// loggerCommand builds the logging binary's command from its URI.
func loggerCommand(u *url.URL, id, ns string) *exec.Cmd {
	q := u.Query()
	var args []string
	env := []string{"CONTAINER_ID=" + id, "CONTAINER_NAMESPACE=" + ns}
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if name, ok := strings.CutPrefix(k, "env."); ok {
			if name != "CONTAINER_ID" && name != "CONTAINER_NAMESPACE" && len(q[k]) > 0 {
				env = append(env, name+"="+q[k][0])
			}
			continue
		}
		args = append(args, k)
		if len(q[k]) > 0 && q[k][0] != "" {
			args = append(args, q[k][0])
		}
	}
	cmd := exec.Command(u.Path, args...)
	cmd.Env = env
	return cmd
}

// startLogger starts the logging binary cfg names, if any, and waits until
// it is ready. Its pipes' write ends are owned by uid:gid, like the other
// stdio pipes.
func startLogger(uid, gid int, cfg Config) (_ *logger, retErr error) {
	target := cfg.Stdout
	if !isBinary(target) {
		target = cfg.Stderr
	}
	if !isBinary(target) {
		return nil, nil
	}
	_, u, _ := parseTarget(target)
	var files []*os.File // the logger's ends, closed here once it has them
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	l := &logger{cmd: loggerCommand(u, cfg.ID, cfg.Namespace), exited: make(chan struct{})}
	defer func() {
		if retErr != nil {
			l.stop()
		}
	}()
	var ready *os.File
	for _, w := range []**os.File{&l.stdout, &l.stderr, nil} {
		r, wr, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("logging binary %s: %w", u.Path, err)
		}
		if w == nil { // the ready pipe: the logger writes, the shim reads
			ready = r
			files = append(files, wr)
			continue
		}
		*w = wr
		files = append(files, r)
		if err := wr.Chown(uid, gid); err != nil {
			return nil, fmt.Errorf("logging binary %s: chown pipe: %w", u.Path, err)
		}
	}
	defer ready.Close()
	l.cmd.ExtraFiles = files
	if err := l.start(); err != nil {
		return nil, fmt.Errorf("start logging binary %s: %w", u.Path, err)
	}
	if err := waitReady(ready, files[2]); err != nil {
		return nil, fmt.Errorf("logging binary %s: %w", u.Path, err)
	}
	l.keepOnly(isBinary(cfg.Stdout), isBinary(cfg.Stderr))
	return l, nil
}

// start runs the logger through go-runc's Monitor, which the shim's reaper
// implements, so that its exit is not taken by the reaping loop.
func (l *logger) start() error {
	ec, err := runc.Monitor.Start(l.cmd)
	if err != nil {
		return err
	}
	go func() {
		_, _ = runc.Monitor.Wait(l.cmd, ec)
		close(l.exited)
	}()
	return nil
}

// waitReady closes the shim's copy of the ready pipe's write end and waits
// for the logger's byte or EOF (which containerd's shims take as ready too).
func waitReady(ready, readyW *os.File) error {
	if err := readyW.Close(); err != nil {
		return err
	}
	_ = ready.SetReadDeadline(time.Now().Add(LoggerReadyTimeout))
	if _, err := ready.Read(make([]byte, 1)); err != nil && !errors.Is(err, io.EOF) {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("not ready after %s: %w", LoggerReadyTimeout, errdefs.ErrUnavailable)
		}
		return fmt.Errorf("wait until ready: %w", err)
	}
	return nil
}

// keepOnly closes the write end of a stream that does not go to the
// logger: it reads EOF there at once.
func (l *logger) keepOnly(stdout, stderr bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !stdout && l.stdout != nil {
		l.stdout.Close()
		l.stdout = nil
	}
	if !stderr && l.stderr != nil {
		l.stderr.Close()
		l.stderr = nil
	}
}

// writers returns the write ends the process's stdout and stderr get; nil
// for a stream that does not go to the logger.
func (l *logger) writers() (stdout, stderr *os.File) {
	if l == nil {
		return nil, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stdout, l.stderr
}

// closeWriters closes the shim's copies of the write ends.
func (l *logger) closeWriters() {
	if l != nil {
		l.keepOnly(false, false)
	}
}

// wait waits for the logger to exit.
func (l *logger) wait() {
	if l != nil && l.cmd.Process != nil {
		<-l.exited
	}
}

// stop closes the write ends, and asks a logger still running to finish
// (SIGTERM), then kills it if it takes longer than loggerStopTimeout.
func (l *logger) stop() {
	if l == nil {
		return
	}
	l.closeWriters()
	if l.cmd.Process == nil {
		return
	}
	select {
	case <-l.exited:
		return
	default:
	}
	_ = l.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-l.exited:
	case <-time.After(loggerStopTimeout):
		_ = l.cmd.Process.Kill()
		<-l.exited
	}
}
