package cri

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
)

// Container logs are files in the CRI format at the kubelet's log path,
// one line per line of output:
//
//	2016-10-06T00:17:09.669794202Z stdout F the line
//	2016-10-06T00:17:09.669794203Z stderr P the first 16 KiB of a long line
//
// (RFC 3339 time with nanoseconds, the stream, F for a full line or P for
// a part of a line longer than max_container_log_line_size, the text
// without its newline).
//
// Where the copying happens: in a logging binary, not in berthd. The
// shim starts it for a binary:// stdout/stderr (runtime/shim/stdio's
// logger protocol, containerd's), and the container writes into its pipes
// directly; the binary is berthd's own executable in its logger mode
// (RunLogger, `berthd --cri-logger ...`). It is the shim's child, not
// berthd's, so logs keep being written while berthd is down or
// restarting, which the kubelet's view across a restart needs; it costs
// one small process per running container, and ends by itself at EOF,
// when the container's last process is gone. containerd instead copies
// from FIFOs inside the daemon, so logs stop (and the container blocks on
// a full pipe) while the daemon is down.
//
// A container with a terminal cannot use a logging binary (the shim has
// only the pty to give), nor can a berthd that does not know its own
// executable, and a container with stdin keeps its stdio in berthd so
// that Attach can join it (stream_attach.go): for those berthd copies
// from FIFOs itself, as containerd does, with the same writer.
//
// ReopenContainerLog (after the kubelet rotated the file away) sends the
// logging binary SIGHUP; it reopens the path, creating a new file.

// LoggerFlag is the first argument of berthd's logger mode.
const LoggerFlag = "--cri-logger"

// Stream names of the CRI log format.
const (
	streamStdout = "stdout"
	streamStderr = "stderr"
)

// logWriter appends CRI log lines to a file, for two streams at once.
type logWriter struct {
	mu      sync.Mutex
	path    string
	f       *os.File
	maxLine int // bytes of content per line; 0 or less: no limit
}

// openLog opens (creating it and its directory) the log file at path.
func openLog(path string, maxLine int) (*logWriter, error) {
	w := &logWriter{path: path, maxLine: maxLine}
	if err := w.reopen(); err != nil {
		return nil, err
	}
	return w, nil
}

// reopen closes the file and opens path again, creating a new file when
// the old one was moved away.
func (w *logWriter) reopen() error {
	if err := os.MkdirAll(filepath.Dir(w.path), 0o755); err != nil {
		return fmt.Errorf("container log %s: %w", w.path, err)
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("container log %s: %w", w.path, err)
	}
	w.mu.Lock()
	old := w.f
	w.f = f
	w.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

func (w *logWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
}

// writeLine writes one record; the lock keeps the two streams' lines
// whole.
func (w *logWriter) writeLine(stream string, partial bool, content []byte) {
	tag := "F"
	if partial {
		tag = "P"
	}
	var b bytes.Buffer
	b.Grow(len(content) + 48)
	b.WriteString(time.Now().UTC().Format(time.RFC3339Nano))
	b.WriteByte(' ')
	b.WriteString(stream)
	b.WriteByte(' ')
	b.WriteString(tag)
	b.WriteByte(' ')
	b.Write(content)
	b.WriteByte('\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		_, _ = w.f.Write(b.Bytes())
	}
}

// copyStream reads r until EOF and writes its lines. A line longer than
// maxLine is written in parts tagged P, the last one F; output that ends
// without a newline is written as a full line at EOF.
func (w *logWriter) copyStream(stream string, r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	var pending []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			pending = append(pending, chunk...)
			complete := pending[len(pending)-1] == '\n'
			if complete {
				pending = pending[:len(pending)-1]
			}
			for w.maxLine > 0 && len(pending) > w.maxLine {
				w.writeLine(stream, true, pending[:w.maxLine])
				pending = pending[w.maxLine:]
			}
			if complete {
				w.writeLine(stream, false, pending)
				pending = pending[:0]
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if len(pending) > 0 {
				w.writeLine(stream, false, pending)
			}
			return
		}
	}
}

// loggerURI is the binary:// target of a container's stdout and stderr:
// binary berthd in logger mode writing path, recording its pid in
// pidFile. The shim passes the query keys, sorted, as arguments.
func loggerURI(binary, path, pidFile string, maxLine int) string {
	q := url.Values{}
	q.Set(LoggerFlag, "")
	q.Set("max-line", strconv.Itoa(maxLine))
	q.Set("path", path)
	q.Set("pidfile", pidFile)
	return (&url.URL{Scheme: "binary", Path: binary, RawQuery: q.Encode()}).String()
}

// RunLogger is berthd's logger mode, the logging binary the shim starts
// for a container (args after LoggerFlag: "max-line N", "path FILE",
// "pidfile FILE", in any order). It reads the container's stdout on file
// descriptor 3 and stderr on 4, writes the CRI log at FILE, tells the
// shim it is ready by closing descriptor 5, reopens FILE on SIGHUP and
// returns once both streams reached EOF.
func RunLogger(args []string) error {
	opts := map[string]string{}
	for i := 0; i+1 < len(args); i += 2 {
		opts[args[i]] = args[i+1]
	}
	path := opts["path"]
	if !filepath.IsAbs(path) {
		return fmt.Errorf("logger: path %q is not absolute: %w", path, errdefs.ErrInvalidArgument)
	}
	maxLine, _ := strconv.Atoi(opts["max-line"])
	w, err := openLog(path, maxLine)
	if err != nil {
		return err
	}
	defer w.close()
	if pf := opts["pidfile"]; pf != "" {
		if err := os.WriteFile(pf, []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
			return fmt.Errorf("logger: %w", err)
		}
		defer os.Remove(pf)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	signal.Ignore(syscall.SIGPIPE)
	go func() {
		for range hup {
			_ = w.reopen()
		}
	}()
	stdout, stderr, ready := os.NewFile(3, "stdout"), os.NewFile(4, "stderr"), os.NewFile(5, "ready")
	if ready != nil {
		ready.Close()
	}
	var wg sync.WaitGroup
	for stream, f := range map[string]*os.File{streamStdout: stdout, streamStderr: stderr} {
		if f == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.copyStream(stream, f)
		}()
	}
	wg.Wait()
	return nil
}
