package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/google/go-cmp/cmp"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/network"
)

func TestParseMemory(t *testing.T) {
	for in, want := range map[string]int64{
		"1024": 1024, "64m": 64 << 20, "64M": 64 << 20, "1g": 1 << 30, "1.5g": 3 << 29,
		"512k": 512 << 10, "64mb": 64 << 20, "2GiB": 2 << 30,
	} {
		if got, err := parseMemory(in); err != nil || got != want {
			t.Errorf("parseMemory(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "m", "-1m", "64x", "1e3", "0", "99999999999t"} {
		if _, err := parseMemory(in); !errdefs.IsInvalidArgument(err) {
			t.Errorf("parseMemory(%q): %v, want invalid argument", in, err)
		}
	}
}

func TestReadEnvFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "env")
	writeFile(t, path, []byte("# comment\nA=1\n\n  B=two words\nPASSED\nC=\n"))
	got, err := readEnvFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"A=1", "B=two words", "PASSED", "C="}, got); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	writeFile(t, path, []byte("A=1\nBAD KEY=2\n"))
	if _, err := readEnvFile(path); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("a key with a space: %v, want an error naming line 2", err)
	}
}

func TestLastLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 1, "c\n"},
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc\n", 5, "a\nb\nc\n"},
		{"a\nb\nc", 1, "c"},
		{"a\nb\n", 0, ""},
		{"", 3, ""},
	} {
		if got := string(lastLines([]byte(tc.in), tc.n)); got != tc.want {
			t.Errorf("lastLines(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestMatchContainer(t *testing.T) {
	recs := []*containersapi.Container{
		{ID: "abc123", Labels: map[string]string{labelName: "web"}},
		{ID: "abd456", Labels: map[string]string{labelName: "db"}},
		{ID: "web"}, // made by ctr: its ID is another's name
	}
	for ref, want := range map[string]string{"abc123": "abc123", "web": "abc123", "db": "abd456", "abc": "abc123", "abd4": "abd456"} {
		if got, err := matchContainer(recs, ref, "default"); err != nil || got.GetID() != want {
			t.Errorf("matchContainer(%q) = %v, %v; want %s", ref, got.GetID(), err, want)
		}
	}
	if _, err := matchContainer(recs, "ab", "default"); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "abc123, abd456") {
		t.Errorf("ambiguous prefix: %v", err)
	}
	if _, err := matchContainer(recs, "zzz", "ns1"); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), `namespace "ns1"`) {
		t.Errorf("unknown container: %v", err)
	}
}

func TestShortID(t *testing.T) {
	id := strings.Repeat("ab", 32)
	if got := shortID(id); got != id[:12] {
		t.Errorf("shortID(hex) = %q", got)
	}
	if got := shortID("my-container-from-ctr"); got != "my-container-from-ctr" {
		t.Errorf("shortID of a ctr name = %q, want it whole", got)
	}
}

func TestParseStat(t *testing.T) {
	boot := time.Unix(1_700_000_000, 0)
	stat := "42 (my (odd) cmd) S 7 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1000 1234 56"
	v, err := parseStat([]byte(stat), boot)
	if err != nil {
		t.Fatal(err)
	}
	want := procView{PID: 42, PPID: 7, State: "S", Command: "[my (odd) cmd]", CPUTime: 3, Started: boot.Add(10 * time.Second)}
	if diff := cmp.Diff(want, v); diff != "" {
		t.Errorf("parseStat (-want +got):\n%s", diff)
	}
	if _, err := parseStat([]byte("42 (x) S 1"), boot); err == nil {
		t.Error("a short stat line parsed")
	}
	if got := statusField([]byte("Name:\tsh\nUid:\t1000\t1000\t1000\t1000\n"), "Uid"); got != "1000" {
		t.Errorf("statusField Uid = %q", got)
	}
	if got := statusField([]byte("cpu 1 2\nbtime 1700000000\n"), "btime"); got != "1700000000" {
		t.Errorf("statusField btime = %q", got)
	}
	if got := cpuTime(90061); got != "1-01:01:01" {
		t.Errorf("cpuTime = %q", got)
	}
}

func TestReadProcsFromFakeProc(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "stat"), []byte("cpu 1\nbtime 1700000000\n"))
	dir := filepath.Join(root, "12")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "stat"), []byte("12 (sleep) S 1 12 12 0 -1 0 0 0 0 0 100 0 0 0 20 0 1 0 100 0 0"))
	writeFile(t, filepath.Join(dir, "status"), []byte("Uid:\t65534\t65534\t65534\t65534\n"))
	writeFile(t, filepath.Join(dir, "cmdline"), []byte("sleep\x00100\x00"))
	got := readProcs(root, []*task.ProcessInfo{{Pid: 12}, {Pid: 13}}) // 13 has exited
	want := []procView{{UID: "65534", PID: 12, PPID: 1, State: "S", CPUTime: 1, Command: "sleep 100",
		Started: time.Unix(1_700_000_001, 0)}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("readProcs (-want +got):\n%s", diff)
	}
}

func TestPlanRun(t *testing.T) {
	dir := t.TempDir()
	base := runOptions{network: networkBridge}
	p, err := planRun(withRun(base, func(o *runOptions) {
		o.volumes = []string{dir + ":/data:ro"}
		o.publish = []string{"127.0.0.1:8080:80"}
		o.env = []string{"A=1"}
		o.memory = "64m"
		o.securityOpts = []string{"seccomp=unconfined", "no-new-privileges"}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.mounts) != 1 || p.mounts[0].Source != dir || len(p.ports) != 1 || p.ports[0].HostPort != 8080 ||
		p.memory != 64<<20 || p.seccomp != "unconfined" || !p.noNewPrivileges || len(p.env) != 1 {
		t.Errorf("plan: %+v", p)
	}
	for name, tc := range map[string]struct {
		o    runOptions
		want string
	}{
		"ports on host":     {withRun(base, func(o *runOptions) { o.network, o.publish = networkHost, []string{"80:80"} }), "-p publishes ports"},
		"ports on none":     {withRun(base, func(o *runOptions) { o.network, o.publish = networkNone, []string{"80:80"} }), "no network"},
		"unknown network":   {withRun(base, func(o *runOptions) { o.network = "overlay" }), "bridge, host or none"},
		"missing volume":    {withRun(base, func(o *runOptions) { o.volumes = []string{dir + "/nope:/x"} }), "does not exist"},
		"bad memory":        {withRun(base, func(o *runOptions) { o.memory = "lots" }), "--memory"},
		"apparmor":          {withRun(base, func(o *runOptions) { o.securityOpts = []string{"apparmor=x"} }), "unsupported --security-opt"},
		"missing profile":   {withRun(base, func(o *runOptions) { o.securityOpts = []string{"seccomp=" + dir + "/p.json"} }), "seccomp profile"},
		"bad nnp":           {withRun(base, func(o *runOptions) { o.securityOpts = []string{"no-new-privileges:maybe"} }), "true or false"},
		"missing env file":  {withRun(base, func(o *runOptions) { o.envFiles = []string{dir + "/env"} }), "--env-file"},
		"port out of range": {withRun(base, func(o *runOptions) { o.publish = []string{"99999:80"} }), "port mapping"},
	} {
		if _, err := planRun(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
	}
}

func withRun(o runOptions, change func(*runOptions)) runOptions {
	change(&o)
	return o
}

func TestRunOptionsCheck(t *testing.T) {
	ok := runOptions{pull: "missing"}
	if err := ok.check(); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]runOptions{
		"-d --rm":    withRun(ok, func(o *runOptions) { o.detach, o.rm = true, true }),
		"-d -t":      withRun(ok, func(o *runOptions) { o.detach, o.tty = true, true }),
		"bad name":   withRun(ok, func(o *runOptions) { o.name = "-x" }),
		"bad pull":   withRun(ok, func(o *runOptions) { o.pull = "sometimes" }),
		"minus cpus": withRun(ok, func(o *runOptions) { o.cpus = -1 }),
	} {
		if err := o.check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCheckCommand(t *testing.T) {
	withCmd := runImage{name: "a", config: ocispec.ImageConfig{Cmd: []string{"sh"}}}
	bare := runImage{name: "docker.io/library/bare:1"}
	if err := checkCommand(withCmd, runOptions{}, nil); err != nil {
		t.Errorf("image with Cmd: %v", err)
	}
	if err := checkCommand(bare, runOptions{}, []string{"ls"}); err != nil {
		t.Errorf("bare image with a command: %v", err)
	}
	if err := checkCommand(bare, runOptions{entrypointSet: true, entrypoint: "/bin/sh"}, nil); err != nil {
		t.Errorf("bare image with --entrypoint: %v", err)
	}
	err := checkCommand(bare, runOptions{}, nil)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "image docker.io/library/bare:1 has no command: give one after the image name") {
		t.Errorf("bare image without a command: %v", err)
	}
	if err := checkCommand(withCmd, runOptions{entrypointSet: true}, nil); err == nil {
		t.Error(`--entrypoint "" and no command accepted`)
	}
}

func TestImageName(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":             "docker.io/library/busybox:latest",
		"127.0.0.1:5000/bb:1": "127.0.0.1:5000/bb:1",
		"example.com/a/b":     "example.com/a/b:latest",
	} {
		if got, err := imageName(in); err != nil || got != want {
			t.Errorf("imageName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := imageName("a b:c"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad reference: %v", err)
	}
}

func TestHookConfigReadsNetworkHooks(t *testing.T) {
	want := network.Config{ConfDir: "/c", BinDirs: []string{"/b1", "/b2"}, StateDir: "/s"}
	hooks := network.Hooks("/usr/bin/berth", want)
	got := hookConfig(hooks.Poststop[0].Args, network.Config{}.WithDefaults())
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("config from the hook's args (-want +got):\n%s", diff)
	}
}

func TestDecodeMetricAndStats(t *testing.T) {
	at := time.Unix(1_700_000_000, 0)
	m1 := metric(t, "a", at, &v1.Metrics{
		CPU:    &v1.CPUStat{Usage: &v1.CPUUsage{Total: 1e9}},
		Memory: &v1.MemoryStat{Usage: &v1.MemoryEntry{Usage: 10 << 20, Limit: 100 << 20}},
		Pids:   &v1.PidsStat{Current: 3},
	})
	m2 := metric(t, "a", at.Add(2*time.Second), &v2.Metrics{
		CPU:    &v2.CPUStat{UsageUsec: 2e6}, // one more CPU second in two seconds
		Memory: &v2.MemoryStat{Usage: 25 << 20, UsageLimit: 100 << 20},
		Pids:   &v2.PidsStat{Current: 4},
	})
	s1, err := decodeMetric(m1)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := decodeMetric(m2)
	if err != nil {
		t.Fatal(err)
	}
	views := statsViews(map[string]string{"a": "web"}, map[string]sample{"a": s1}, map[string]sample{"a": s2, "b": s2})
	want := []statsView{{ID: "a", Name: "web", CPUPercent: 50, MemUsage: 25 << 20, MemLimit: 100 << 20, MemPercent: 25, Pids: 4}}
	if diff := cmp.Diff(want, views); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	unlimited, err := decodeMetric(metric(t, "c", at, &v2.Metrics{Memory: &v2.MemoryStat{UsageLimit: ^uint64(0)}}))
	if err != nil || unlimited.limit != hostMemory() {
		t.Errorf("no limit: %d, %v; want the host's memory %d", unlimited.limit, err, hostMemory())
	}
	if _, err := decodeMetric(metric(t, "d", at, &types.Mount{})); !errdefs.IsNotImplemented(err) {
		t.Errorf("metrics of another type: %v", err)
	}
}

func metric(t *testing.T, id string, at time.Time, v any) *types.Metric {
	t.Helper()
	data, err := typeurl.MarshalAnyToProto(v)
	if err != nil {
		t.Fatal(err)
	}
	return &types.Metric{ID: id, Timestamp: timestamppb.New(at), Data: data}
}

func TestContainerViewStatus(t *testing.T) {
	rec := &containersapi.Container{ID: "x", Labels: map[string]string{
		labelPorts: `[{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":"127.0.0.1"}]`,
	}}
	for _, tc := range []struct {
		task *task.Process
		want string
	}{
		{nil, "Created"},
		{&task.Process{Status: task.Status_RUNNING}, "Up"},
		{&task.Process{Status: task.Status_PAUSED}, "Paused"},
		{&task.Process{Status: task.Status_STOPPED, ExitStatus: 137}, "Exited (137)"},
	} {
		v := newContainerView(rec, tc.task)
		if got := statusText(v); got != tc.want {
			t.Errorf("status of %v = %q, want %q", tc.task, got, tc.want)
		}
		if len(v.Ports) != 1 || v.Ports[0].String() != "127.0.0.1:8080->80/tcp" {
			t.Errorf("ports: %+v", v.Ports)
		}
	}
}

func TestExitCodeOf(t *testing.T) {
	if code, ok := exitCodeOf(errors.Join(exitResult(3), errors.New("other"))); !ok || code != 3 {
		t.Errorf("exitCodeOf = %d, %v", code, ok)
	}
	if exitResult(0) != nil {
		t.Error("exit status 0 is an error")
	}
	if _, ok := exitCodeOf(errors.New("plain")); ok {
		t.Error("a plain error has an exit code")
	}
}

func TestRunFlagsStopAtTheImage(t *testing.T) {
	root := newRootCommand(&app{}, func(string) string { return "" })
	cmd, rest, err := root.Find([]string{"run", "-d", "--name", "x", "img", "ls", "-d", "--name"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatal(err)
	}
	if got := cmd.Flags().Args(); strings.Join(got, " ") != "img ls -d --name" {
		t.Errorf("args = %q, want the image and its command with its own flags", got)
	}
	if v, _ := cmd.Flags().GetString("name"); v != "x" {
		t.Errorf("--name = %q", v)
	}
}

// FuzzParseStat feeds /proc/PID/stat lines, which hold a command name the
// container chose: parsing never panics.
func FuzzParseStat(f *testing.F) {
	f.Add([]byte("42 (my (odd) cmd) S 7 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1000 1234 56"))
	f.Add([]byte("1 () R"))
	f.Add([]byte(") 1 ("))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseStat(b, time.Unix(0, 0))
	})
}

// FuzzLastLines checks that the tail of a log is a suffix of it.
func FuzzLastLines(f *testing.F) {
	f.Add([]byte("a\nb\nc\n"), 2)
	f.Add([]byte("\n\n"), 1)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n < 0 {
			n = -n
		}
		if got := lastLines(b, n); !strings.HasSuffix(string(b), string(got)) {
			t.Errorf("lastLines(%q, %d) = %q, not a suffix", b, n, got)
		}
	})
}
