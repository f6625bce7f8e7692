package integration

import (
	"strings"
	"testing"
)

// namespaceLabels parses `ctr namespaces ls` into NAME -> LABELS column.
func namespaceLabels(t *testing.T, out string) map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("ctr namespaces ls printed no table:\n%s", out)
	}
	got := map[string]string{}
	for _, line := range lines[1:] {
		name, lbls, _ := strings.Cut(strings.TrimSpace(line), " ")
		got[name] = strings.TrimSpace(lbls)
	}
	return got
}

func TestNamespaces(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)

	d.mustCtr("namespaces", "create", "x")
	if got := namespaceLabels(t, d.mustCtr("namespaces", "ls")); len(got) != 1 || got["x"] != "" {
		t.Errorf("namespaces after create x = %v, want only x, without labels", got)
	}
	if stderr := d.ctrFails("namespaces", "create", "x"); !strings.Contains(stderr, "already exists") {
		t.Errorf("create x twice: stderr %q, want it to say already exists", stderr)
	}
	d.mustCtr("-n", "x", "namespaces", "label", "x", "k=v")
	if got := namespaceLabels(t, d.mustCtr("namespaces", "ls")); got["x"] != "k=v" {
		t.Errorf("labels of x after label k=v = %q, want k=v", got["x"])
	}
	d.mustCtr("namespaces", "rm", "x")
	if got := namespaceLabels(t, d.mustCtr("namespaces", "ls")); len(got) != 0 {
		t.Errorf("namespaces after rm x = %v, want none", got)
	}

	// rm refuses a namespace holding content.
	d.mustCtrIn(strings.NewReader("held"), "-n", "full", "content", "ingest", "blob")
	stderr := d.ctrFails("namespaces", "rm", "full")
	for _, want := range []string{`"full"`, "content blobs (1)"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("rm of a namespace with a blob: stderr %q, want it to contain %q", stderr, want)
		}
	}
	if got := namespaceLabels(t, d.mustCtr("namespaces", "ls")); len(got) != 1 {
		t.Errorf("namespaces after a refused rm = %v, want full still there", got)
	}
	d.mustCtr("-n", "full", "content", "rm", digestOf([]byte("held")))
	d.mustCtr("namespaces", "rm", "full")

	// Invalid names are refused, naming the identifier rule.
	for _, name := range []string{"bad name!", "x-", "a..b", strings.Repeat("n", 77)} {
		stderr := d.ctrFails("namespaces", "create", name)
		if !strings.Contains(stderr, "identifier") || !strings.Contains(stderr, "invalid argument") {
			t.Errorf("create %q: stderr %q, want it to name the identifier rule (invalid argument)", name, stderr)
		}
	}
	if stderr := d.ctrFails("namespaces", "create", "bad name!"); !strings.Contains(stderr, "letters and digits") {
		t.Errorf("create %q: stderr %q, want it to explain the rule", "bad name!", stderr)
	}
}
