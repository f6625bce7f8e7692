package integration

// The CRI's streaming calls through crictl v1.37.0 against a real
// berthd: Exec over SPDY and websocket (output, exit codes, stdin) and
// PortForward to a busybox httpd inside a pod's network namespace.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestCRIStreamExec(t *testing.T) {
	t.Parallel()
	e := newCRIPodEnv(t)
	d := e.d
	_, ctr := e.runPod("stream", "while :; do /bin/busybox sleep 1; done")
	for _, transport := range []string{"spdy", "websocket"} {
		r := d.crictl("exec", "-r", transport, ctr, "echo", "hi")
		if r.code != 0 || strings.TrimSpace(r.stdout) != "hi" {
			t.Errorf("crictl exec -r %s %s echo hi: %s", transport, ctr, r)
		}
		r = d.crictl("exec", "-r", transport, ctr, "/bin/sh", "-c", "echo out; echo err >&2; exit 3")
		// crictl exits 1 and names the code client-go decoded from the
		// error stream's Status.
		if r.code == 0 || strings.TrimSpace(r.stdout) != "out" || !strings.Contains(r.stderr, "err\n") ||
			!strings.Contains(r.stderr, "command terminated with exit code 3") {
			t.Errorf("crictl exec -r %s of a command exiting 3: %s", transport, r)
		}
		r = d.crictlStdin("line one\nline two\n", "exec", "-i", "-r", transport, ctr, "/bin/busybox", "wc", "-l")
		if r.code != 0 || strings.TrimSpace(r.stdout) != "2" {
			t.Errorf("crictl exec -i -r %s wc -l with two lines on stdin: %s", transport, r)
		}
	}
	// A terminal: crictl needs one of its own, which script(1) gives.
	for _, transport := range []string{"spdy", "websocket"} {
		ctx, cancel := context.WithTimeout(context.Background(), crictlTimeout)
		cmd := d.crictlCmd(ctx, "exec", "-it", "-r", transport, ctr, "/bin/sh", "-c", "tty; exit 4")
		line := strings.Join(cmd.Args, " ")
		out, err := exec.CommandContext(ctx, "script", "-qec", line, "/dev/null").CombinedOutput()
		cancel()
		// With a terminal crictl exits with the process's code.
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 4 || !strings.Contains(string(out), "/dev/pts/") {
			t.Errorf("crictl exec -it -r %s tty: %v\n%s", transport, err, out)
		}
	}
	// A URL is single-use and the gRPC call checks the container.
	if r := d.crictl("exec", "nosuchcontainer", "true"); r.code == 0 {
		t.Errorf("crictl exec in a missing container succeeded: %s", r)
	}
}

func TestCRIStreamAttach(t *testing.T) {
	t.Parallel()
	e := newCRIPodEnv(t)
	d := e.d
	podCfg := e.podConfig("attach", nil)
	pod := strings.TrimSpace(d.mustCrictl("runp", podCfg))
	for _, transport := range []string{"spdy", "websocket"} {
		name := "attach-" + transport
		ctrCfg := writeJSONFile(t, map[string]any{
			"metadata":   map[string]any{"name": name},
			"image":      map[string]any{"image": e.image},
			"command":    []string{"/bin/sh", "-c", `while read l; do echo "got $l"; echo "err $l" >&2; done; echo bye`},
			"log_path":   name + "/0.log",
			"stdin":      true,
			"stdin_once": true,
		})
		ctr := strings.TrimSpace(d.mustCrictl("create", pod, ctrCfg, podCfg))
		d.mustCrictl("start", ctr)
		// stdin_once: the end of crictl's stdin ends the container's, the
		// loop ends, and with the output attach.
		r := d.crictlStdin("one\ntwo\n", "attach", "-i", "-r", transport, ctr)
		if r.code != 0 || r.stdout != "got one\ngot two\nbye\n" || !strings.Contains(r.stderr, "err one\nerr two\n") {
			t.Errorf("crictl attach -i -r %s with two lines: %s", transport, r)
		}
		// The output went to the log too.
		log := e.waitLog(filepath.Join(e.logDir, "attach", name+"/0.log"), "bye")
		if !strings.Contains(log, "stdout F got two") || !strings.Contains(log, "stderr F err one") {
			t.Errorf("log of the attached container:\n%s", log)
		}
	}
	// Attach needs a container created with stdin or tty.
	_, plain := e.runPod("plain", "while :; do /bin/busybox sleep 1; done")
	if r := d.crictl("attach", plain); r.code == 0 || !strings.Contains(r.stderr, "stdin or tty") {
		t.Errorf("crictl attach to a container without stdin or tty: %s", r)
	}
}

var forwardingRE = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 80`)

func TestCRIStreamPortForward(t *testing.T) {
	t.Parallel()
	e := newCRIPodEnv(t)
	d := e.d
	pod, ctr := e.runPod("pf", "mkdir -p /www && echo hello-from-pod > /www/index.html && exec /bin/busybox httpd -f -p 80 -h /www")
	// A refused connection ends crictl port-forward: wait for httpd.
	eventually(t, 20*time.Second, func() error {
		if r := d.crictl("exec", "-s", ctr, "/bin/busybox", "wget", "-q", "-O-", "http://127.0.0.1/index.html"); r.code != 0 {
			return errors.New(r.String())
		}
		return nil
	})
	for _, transport := range []string{"spdy", "websocket"} {
		ctx, cancel := context.WithTimeout(context.Background(), crictlTimeout)
		cmd := d.crictlCmd(ctx, "port-forward", "-r", transport, pod, "0:80")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		port := make(chan string, 1)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if m := forwardingRE.FindStringSubmatch(sc.Text()); m != nil {
					port <- m[1]
				}
			}
			close(port)
		}()
		var got string
		select {
		case p, ok := <-port:
			if !ok {
				t.Fatalf("crictl port-forward -r %s ended: %s", transport, stderr.String())
			}
			got = fetchWithRetry(t, "http://127.0.0.1:"+p+"/index.html")
		case <-time.After(30 * time.Second):
			t.Fatalf("crictl port-forward -r %s did not say where it listens: %s", transport, stderr.String())
		}
		if got != "hello-from-pod\n" {
			t.Errorf("GET through crictl port-forward -r %s: %q, want %q (crictl: %s)", transport, got, "hello-from-pod\n", stderr.String())
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		cancel()
	}
}

// fetchWithRetry GETs url, retrying while httpd starts.
func fetchWithRetry(t *testing.T, url string) string {
	t.Helper()
	var last error
	for range 20 {
		resp, err := http.Get(url)
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				return string(b)
			}
			last = errors.New(resp.Status)
		} else {
			last = err
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Errorf("GET %s: %v", url, last)
	return ""
}
