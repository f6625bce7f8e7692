package main

import (
	"bytes"
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// parseGlobals parses args the way berth would, without running anything.
func parseGlobals(t *testing.T, env map[string]string, args ...string) (globalOptions, error) {
	t.Helper()
	a := &app{}
	root := newRootCommand(a, func(k string) string { return env[k] })
	cmd, rest, err := root.Find(args)
	if err != nil {
		t.Fatalf("find %q: %v", args, err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return a.opts, err
	}
	return a.opts, a.opts.validate()
}

func TestGlobalFlagDefaults(t *testing.T) {
	got, err := parseGlobals(t, nil, "version")
	if err != nil {
		t.Fatal(err)
	}
	want := globalOptions{address: "/run/berth/berth.sock", namespace: "default", format: "table"}
	if got != want {
		t.Errorf("defaults = %+v, want %+v", got, want)
	}
}

func TestGlobalFlagsFromEnvironment(t *testing.T) {
	env := map[string]string{"BERTH_ADDRESS": "/tmp/b.sock", "BERTH_NAMESPACE": "k8s.io"}
	got, err := parseGlobals(t, env, "ns", "ls")
	if err != nil {
		t.Fatal(err)
	}
	if got.address != "/tmp/b.sock" || got.namespace != "k8s.io" {
		t.Errorf("from env: %+v", got)
	}
	// Flags win over the environment, after the subcommand too.
	got, err = parseGlobals(t, env, "content", "ls", "-n", "other", "--address", "/x.sock",
		"--format", "json", "--timeout", "3s")
	if err != nil {
		t.Fatal(err)
	}
	want := globalOptions{address: "/x.sock", namespace: "other", format: "json", timeout: 3 * time.Second}
	if got != want {
		t.Errorf("flags = %+v, want %+v", got, want)
	}
}

func TestGlobalFlagsRejected(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--format", "yaml", "version"}, `invalid --format "yaml"`},
		{[]string{"-n", "", "version"}, "empty --namespace"},
		{[]string{"--address", "", "version"}, "empty --address"},
		{[]string{"--timeout", "-1s", "version"}, "negative --timeout"},
		{[]string{"--timeout", "soon", "version"}, "invalid argument"},
	} {
		_, err := parseGlobals(t, nil, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

func TestCommandAliases(t *testing.T) {
	root := newRootCommand(&app{}, func(string) string { return "" })
	for alias, want := range map[string]string{
		"ns ls":            "berth namespaces ls",
		"namespace create": "berth namespaces create",
		"namespaces rm":    "berth namespaces rm",
		"i ls":             "berth images ls",
		"image rm":         "berth images rm",
		"plugins ls":       "berth plugins ls",
		"content active":   "berth content active",
		"image inspect":    "berth images inspect",
		"i import":         "berth images import",
		"image export":     "berth images export",
		"image tag":        "berth images tag",
		"tag":              "berth tag",
		"snapshot ls":      "berth snapshots ls",
		"snapshots tree":   "berth snapshots tree",
		"login":            "berth login",
		"logout":           "berth logout",
	} {
		cmd, _, err := root.Find(strings.Fields(alias))
		if err != nil || cmd.CommandPath() != want {
			t.Errorf("%q resolves to %q (%v), want %q", alias, cmd.CommandPath(), err, want)
		}
	}
}

func TestParseLabels(t *testing.T) {
	got, err := parseLabels([]string{"a=b", "c=", "d=e=f"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": "b", "c": "", "d": "e=f"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("labels = %v, want %v", got, want)
	}
	if paths := labelPaths(got); !reflect.DeepEqual(paths, []string{"labels.a", "labels.c", "labels.d"}) {
		t.Errorf("paths = %v", paths)
	}
	for _, bad := range []string{"novalue", "=v"} {
		if _, err := parseLabels([]string{bad}); err == nil {
			t.Errorf("parseLabels(%q) accepted", bad)
		}
	}
}

func TestUnreachableDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	var stdout, stderr bytes.Buffer
	code := execute(context.Background(), []string{"--address", sock, "ns", "ls"}, nil, &stdout, &stderr,
		func(string) string { return "" })
	want := "berth: cannot connect to berthd at " + sock +
		": no such file or directory (is berthd running? set --address or BERTH_ADDRESS)\n"
	if code != 1 || stderr.String() != want {
		t.Errorf("exit %d, stderr %q; want 1, %q", code, stderr.String(), want)
	}
}

func TestUsageErrorsExitOne(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := execute(context.Background(), []string{"ns", "label", "x", "novalue"}, nil, &stdout, &stderr,
		func(string) string { return "" })
	if code != 1 || stderr.String() != "berth: invalid label \"novalue\": want key=value\n" {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}
