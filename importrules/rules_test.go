package importrules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
)

// A rule forbids the packages matched by from, less except, to import the
// packages matched by deny, less allow. Module-relative patterns
// ("metadata", "services/...") name berth's packages; a pattern whose
// first element has a dot ("github.com/spf13/cobra/...") names any
// package; "..." alone is every package of the module.
type rule struct {
	why    string
	from   []string
	except []string
	deny   []string
	allow  []string
	// closure checks the whole dependency closure, not just the direct
	// imports; tests adds the direct imports of the package's tests.
	closure, tests bool
}

// leaves are the subsystems that only shared rules sit under. New leaf
// subsystems join this list.
var leaves = []string{
	"content", "content/local", "filters", "identifiers", "labels",
	"events", "events/exchange", "images", "leases", "gc", "log",
	"namespaces", "plugin", "config",
	// Added with the snapshot, diff and pull work.
	"snapshots", "snapshots/overlay", "snapshots/native", "snapshots/storage",
	"snapshots/testsuite", "mount", "archive", "archive/compression",
	"diff", "diff/apply", "remotes/hosts",
	"remotes", "remotes/auth", "remotes/registry", "pull", "push", "containers",
	"runtime/shim", "runtime/shim/bootstrap", "runtime/shim/reaper",
	"runtime/shim/stdio", "runtime/shim/publisher", "runtime/manager",
	// Added with berth run: the OCI runtime spec.
	"oci",
	// berth run's CNI networks; the runtime handler table.
	"network", "runtime/handler",
	// Resident-set trimming of the daemons.
	"procmem",
}

var rules = []rule{
	{
		why:  "rule 1: the daemon never imports the CLI",
		from: []string{"..."}, except: []string{"cmd/berth/..."},
		deny: []string{"cmd/berth/..."},
	},
	{
		why:  "rule 1: berthd's dependency closure holds neither the CLI nor cobra",
		from: []string{"cmd/berthd/..."}, closure: true,
		deny: []string{"cmd/berth/...", "github.com/spf13/cobra/..."},
	},
	{
		why:  "rule 2: no containerd implementation, nerdctl or CRI-O; only containerd's API module",
		from: []string{"..."}, closure: true, tests: true,
		deny: []string{
			"github.com/containerd/containerd/...", // the 1.x module root and /v2
			"github.com/containerd/nerdctl/...",
			"github.com/cri-o/cri-o/...",
		},
		allow: []string{"github.com/containerd/containerd/api/..."},
	},
	{
		why:  "rule 3: leaf subsystems never reach up into the daemon, services, metadata or commands",
		from: leaves, closure: true,
		deny: []string{"daemon/...", "services/...", "metadata/...", "cmd/..."},
	},
	{
		why:  "rule 3: metadata sits below the services and the daemon",
		from: []string{"metadata/..."}, closure: true,
		deny: []string{"services/...", "daemon/...", "cmd/..."},
	},
	{
		why:  "rule 3: services convert protos for the daemon, never the reverse",
		from: []string{"services/..."}, closure: true,
		deny: []string{"daemon/...", "cmd/..."},
	},
}

// grabBags are the package names rule 4 forbids.
var grabBags = []string{"util", "utils", "common", "helpers"}

// pkg is the part of `go list -json` output the rules need.
type pkg struct {
	ImportPath   string
	Name         string
	Imports      []string
	Deps         []string
	TestImports  []string
	XTestImports []string
}

// graph is the module's packages and everything they depend on.
type graph struct {
	module string
	pkgs   map[string]*pkg
	own    []string // the module's packages, sorted
}

func TestImportRules(t *testing.T) {
	g := loadGraph(t)
	for _, v := range g.check(rules) {
		t.Error(v)
	}
}

func TestNoGrabBagPackages(t *testing.T) {
	g := loadGraph(t)
	for _, v := range g.grabBags() {
		t.Error(v)
	}
}

// loadGraph returns the graph of the module the test sits in.
func loadGraph(t *testing.T) *graph {
	t.Helper()
	g, err := moduleGraph()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// moduleGraph runs go list once for all the tests.
var moduleGraph = sync.OnceValues(func() (*graph, error) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("the import rules need the go command: %w", err)
	}
	mod, err := exec.Command(goCmd, "list", "-m", "-f", "{{.Path}}").Output()
	if err != nil {
		return nil, fmt.Errorf("go list -m: %w", commandError(err))
	}
	// -e: a package that does not build is still checked; the build
	// failure is reported elsewhere.
	out, err := exec.Command(goCmd, "list", "-e", "-deps", "-json", "../...").Output()
	if err != nil {
		return nil, fmt.Errorf("go list -deps: %w", commandError(err))
	}
	return parseGraph(strings.TrimSpace(string(mod)), bytes.NewReader(out))
})

func commandError(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("%w: %s", err, ee.Stderr)
	}
	return err
}

// parseGraph reads the stream of JSON objects go list -json writes.
func parseGraph(module string, r io.Reader) (*graph, error) {
	g := &graph{module: module, pkgs: map[string]*pkg{}}
	dec := json.NewDecoder(r)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decode go list output: %w", err)
		}
		g.pkgs[p.ImportPath] = &p
		if g.inModule(p.ImportPath) {
			g.own = append(g.own, p.ImportPath)
		}
	}
	slices.Sort(g.own)
	return g, nil
}

func (g *graph) inModule(importPath string) bool {
	return importPath == g.module || strings.HasPrefix(importPath, g.module+"/")
}

// rel is importPath relative to the module, for messages.
func (g *graph) rel(importPath string) string {
	if r, ok := strings.CutPrefix(importPath, g.module+"/"); ok {
		return r
	}
	return importPath
}

// matches reports whether importPath matches any of patterns.
func (g *graph) matches(importPath string, patterns []string) bool {
	for _, p := range patterns {
		if p == "..." {
			if g.inModule(importPath) {
				return true
			}
			continue
		}
		first, _, _ := strings.Cut(p, "/")
		if !strings.Contains(first, ".") {
			p = g.module + "/" + p
		}
		if base, ok := strings.CutSuffix(p, "/..."); ok {
			if importPath == base || strings.HasPrefix(importPath, base+"/") {
				return true
			}
		} else if importPath == p {
			return true
		}
	}
	return false
}

// check returns one message per violation of rules, and one per rule
// pattern that matches none of the module's packages.
func (g *graph) check(rules []rule) []string {
	var out []string
	for _, r := range rules {
		for _, p := range r.from {
			if !slices.ContainsFunc(g.own, func(ip string) bool { return g.matches(ip, []string{p}) }) {
				out = append(out, fmt.Sprintf("%s: no package matches %q: renamed or removed? update the table in importrules/rules_test.go", r.why, p))
			}
		}
		for _, ip := range g.own {
			if !g.matches(ip, r.from) || g.matches(ip, r.except) {
				continue
			}
			out = append(out, g.checkPackage(r, g.pkgs[ip])...)
		}
	}
	return out
}

func (g *graph) checkPackage(r rule, p *pkg) []string {
	var out []string
	denied := func(ip string) bool { return g.matches(ip, r.deny) && !g.matches(ip, r.allow) }
	deps := p.Imports
	if r.closure {
		deps = p.Deps
	}
	for _, d := range deps {
		if denied(d) {
			out = append(out, fmt.Sprintf("%s imports %s (%s): %s",
				g.rel(p.ImportPath), d, strings.Join(g.chain(p.ImportPath, d), " -> "), r.why))
		}
	}
	if r.tests {
		for _, d := range slices.Concat(p.TestImports, p.XTestImports) {
			if denied(d) {
				out = append(out, fmt.Sprintf("tests of %s import %s: %s", g.rel(p.ImportPath), d, r.why))
			}
		}
	}
	return out
}

// chain is a shortest chain of imports from one package to another, with
// the module's packages written relative to it.
func (g *graph) chain(from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var path []string
			for n := to; n != ""; n = prev[n] {
				path = append(path, g.rel(n))
			}
			slices.Reverse(path)
			return path
		}
		if p := g.pkgs[cur]; p != nil {
			for _, next := range p.Imports {
				if _, seen := prev[next]; !seen {
					prev[next] = cur
					queue = append(queue, next)
				}
			}
		}
	}
	return []string{g.rel(from), "...", to}
}

// grabBags returns one message per package of the module named like a
// grab bag, by its package name or by a directory on its path.
func (g *graph) grabBags() []string {
	var out []string
	for _, ip := range g.own {
		p := g.pkgs[ip]
		dirs := strings.Split(g.rel(ip), "/")
		if slices.Contains(grabBags, p.Name) || slices.ContainsFunc(dirs, func(d string) bool { return slices.Contains(grabBags, d) }) {
			out = append(out, fmt.Sprintf("package %s (%s) is a grab bag: rule 4 wants packages named for what they own", g.rel(ip), path.Base(ip)))
		}
	}
	return out
}

// fakeGraph builds a graph of module example.com/m from direct imports;
// each package's closure is computed from them.
func fakeGraph(imports map[string][]string) *graph {
	g := &graph{module: "example.com/m", pkgs: map[string]*pkg{}}
	for ip, imps := range imports {
		g.pkgs[ip] = &pkg{ImportPath: ip, Name: path.Base(ip), Imports: imps}
		if g.inModule(ip) {
			g.own = append(g.own, ip)
		}
	}
	for _, p := range g.pkgs {
		seen := map[string]bool{}
		var visit func(string)
		visit = func(ip string) {
			if dep := g.pkgs[ip]; dep != nil {
				for _, d := range dep.Imports {
					if !seen[d] {
						seen[d] = true
						visit(d)
					}
				}
			}
		}
		visit(p.ImportPath)
		for d := range seen {
			p.Deps = append(p.Deps, d)
		}
		slices.Sort(p.Deps)
	}
	slices.Sort(g.own)
	return g
}

// The checker itself: each kind of violation is reported, naming the
// offending import and how it is reached.
func TestCheckerReports(t *testing.T) {
	const m = "example.com/m/"
	g := fakeGraph(map[string][]string{
		m + "cmd/berth":          {"github.com/spf13/cobra"},
		m + "cmd/berthd":         {m + "daemon"},
		m + "daemon":             {m + "services/images", m + "bridge"},
		m + "bridge":             {"github.com/spf13/cobra", m + "cmd/berth/flags"},
		m + "cmd/berth/flags":    nil,
		m + "services/images":    {m + "metadata", m + "daemon"},
		m + "metadata":           {m + "content", "github.com/containerd/containerd/api/events"},
		m + "content":            {m + "labels", "github.com/containerd/containerd/v2/core/content"},
		m + "labels":             {m + "metadata"},
		m + "util":               nil,
		"github.com/spf13/cobra": nil,
		"github.com/containerd/containerd/api/events":      nil,
		"github.com/containerd/containerd/v2/core/content": nil,
	})
	g.pkgs[m+"labels"].XTestImports = []string{"github.com/cri-o/cri-o/pkg/config"}
	rules := []rule{
		{why: "R1", from: []string{"..."}, except: []string{"cmd/berth/..."}, deny: []string{"cmd/berth/..."}},
		{why: "R1b", from: []string{"cmd/berthd"}, closure: true, deny: []string{"cmd/berth/...", "github.com/spf13/cobra/..."}},
		{why: "R2", from: []string{"..."}, closure: true, tests: true,
			deny:  []string{"github.com/containerd/containerd/...", "github.com/cri-o/cri-o/..."},
			allow: []string{"github.com/containerd/containerd/api/..."}},
		{why: "R3", from: []string{"content", "labels"}, closure: true, deny: []string{"metadata/..."}},
		{why: "R3b", from: []string{"services/..."}, deny: []string{"daemon/..."}},
		{why: "R9", from: []string{"snapshots"}},
	}
	got := g.check(rules)
	want := []string{
		"bridge imports example.com/m/cmd/berth/flags (bridge -> cmd/berth/flags): R1",
		"cmd/berthd imports example.com/m/cmd/berth/flags (cmd/berthd -> daemon -> bridge -> cmd/berth/flags): R1b",
		"cmd/berthd imports github.com/spf13/cobra (cmd/berthd -> daemon -> bridge -> github.com/spf13/cobra): R1b",
		"content imports github.com/containerd/containerd/v2/core/content (content -> github.com/containerd/containerd/v2/core/content): R2",
		"tests of labels import github.com/cri-o/cri-o/pkg/config: R2",
		"content imports example.com/m/metadata (content -> labels -> metadata): R3",
		"labels imports example.com/m/metadata (labels -> metadata): R3",
		"services/images imports example.com/m/daemon (services/images -> daemon): R3b",
		`R9: no package matches "snapshots": renamed or removed? update the table in importrules/rules_test.go`,
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("missing violation %q", w)
		}
	}
	// Everything else reported is R2 reaching the v2 package through
	// content, from the packages that import content.
	for _, v := range got {
		if !slices.Contains(want, v) && !(strings.HasSuffix(v, ": R2") && strings.Contains(v, "-> content -> github.com/containerd/containerd/v2/core/content")) {
			t.Errorf("unexpected violation %q", v)
		}
	}
	if got := g.grabBags(); len(got) != 1 || !strings.Contains(got[0], "package util ") {
		t.Errorf("grab bags = %q, want the util package", got)
	}
}
