package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
)

// Stdout and stderr given the same file:// URI both go to that file,
// which is created with its directories and appended to.
func TestFileLog(t *testing.T) {
	tk := newTask(t, "filelog", []string{"sh", "-c", "echo out; echo err >&2"}, false)
	path := filepath.Join(t.TempDir(), "logs", "filelog", "ctr.log")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("earlier\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	tk.create(t, "file://"+path, "file://"+path)
	ctx := context.Background()
	if _, err := tk.shim.Start(ctx, &taskapi.StartRequest{ID: tk.id}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if w := wait(t, tk, ""); w.ExitStatus != 0 {
		t.Errorf("Wait = %d", w.ExitStatus)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := string(data)
	if !strings.HasPrefix(got, "earlier\n") || !strings.Contains(got, "out\n") || !strings.Contains(got, "err\n") || len(got) != len("earlier\nout\nerr\n") {
		t.Errorf("log file = %q, want the earlier line, then out and err", got)
	}
	if _, err := tk.shim.Delete(ctx, &taskapi.DeleteRequest{ID: tk.id}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

// testLogger is a logging binary as containerd documents them: it writes
// its arguments and environment to files in the directory its "dir"
// argument names, copies fd 3 and fd 4 to files there, and closes fd 5 when
// ready (its copies close their own fd 5 first, or the shim would not see
// EOF). The shim gives it no PATH: sh's default finds the tools.
const testLogger = `#!/bin/sh
d=$2
echo "$@" > "$d/args.$CONTAINER_ID"
env | sort > "$d/env.$CONTAINER_ID"
cat <&3 5>&- > "$d/stdout.$CONTAINER_ID" &
cat <&4 5>&- > "$d/stderr.$CONTAINER_ID" &
touch "$d/ready.$CONTAINER_ID"
exec 5>&-
wait
touch "$d/done.$CONTAINER_ID"
`

// binary:// stdio starts the logging binary with the URI's query as
// arguments and the task's id and namespace in its environment, for the
// init process and for an exec (whose id it is then given); the process's
// output reaches it, and it has finished when Wait returns.
func TestBinaryLogger(t *testing.T) {
	tk := newTask(t, "binlog", []string{"sh", "-c", "echo init-out; echo init-err >&2; sleep 100"}, false)
	dir := t.TempDir()
	logger := filepath.Join(t.TempDir(), "logger")
	if err := os.WriteFile(logger, []byte(testLogger), 0o755); err != nil {
		t.Fatal(err)
	}
	uri := "binary://" + logger + "?dir=" + dir + "&mode=test"
	tk.create(t, uri, uri)
	read := func(name string) string {
		data, _ := os.ReadFile(filepath.Join(dir, name))
		return string(data)
	}
	if _, err := os.Stat(filepath.Join(dir, "ready.binlog")); err != nil {
		t.Errorf("Create returned before the logger was ready: %v", err)
	}
	if got, want := read("args.binlog"), "dir "+dir+" mode test\n"; got != want {
		t.Errorf("logger arguments = %q, want %q", got, want)
	}
	env := read("env.binlog")
	if !strings.Contains(env, "CONTAINER_ID=binlog\n") || !strings.Contains(env, "CONTAINER_NAMESPACE="+testNamespace+"\n") || strings.Contains(env, "TTRPC_ADDRESS") {
		t.Errorf("logger environment = %q, want the task id and namespace only", env)
	}
	ctx := context.Background()
	if _, err := tk.shim.Start(ctx, &taskapi.StartRequest{ID: tk.id}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	execURI := "binary://" + logger + "?dir=" + dir
	if _, err := tk.shim.Exec(ctx, &taskapi.ExecProcessRequest{ID: tk.id, ExecID: "ex1", Stdout: execURI, Stderr: execURI, Spec: processSpec(t, "sh", "-c", "echo exec-out; echo exec-err >&2")}); err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if _, err := tk.shim.Start(ctx, &taskapi.StartRequest{ID: tk.id, ExecID: "ex1"}); err != nil {
		t.Fatalf("Start exec: %v", err)
	}
	wait(t, tk, "ex1")
	if got := read("stdout.ex1") + read("stderr.ex1"); got != "exec-out\nexec-err\n" {
		t.Errorf("exec's logger got %q", got)
	}
	if _, err := tk.shim.Kill(ctx, &taskapi.KillRequest{ID: tk.id, Signal: 9}); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	wait(t, tk, "")
	if got := read("stdout.binlog") + read("stderr.binlog"); got != "init-out\ninit-err\n" {
		t.Errorf("init's logger got %q", got)
	}
	for _, id := range []string{"binlog", "ex1"} {
		if _, err := os.Stat(filepath.Join(dir, "done."+id)); err != nil {
			t.Errorf("logger of %s not finished when Wait returned: %v", id, err)
		}
	}
	if _, err := tk.shim.Delete(ctx, &taskapi.DeleteRequest{ID: tk.id}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

// A logging binary that does not exist fails Create with its path.
func TestBinaryLoggerMissing(t *testing.T) {
	tk := newTask(t, "nolog", []string{"true"}, false)
	_, err := tk.shim.Create(context.Background(), tk.createRequest(t, "binary:///nonexistent/logger", ""))
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/logger") {
		t.Fatalf("Create = %v, want an error naming the logger", err)
	}
	if tk.runcKnows() {
		t.Error("runc has the container of a failed Create")
	}
}
