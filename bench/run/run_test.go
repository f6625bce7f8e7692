package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// fakeBusybox is a stand-in for /bin/busybox: the image only copies it.
func fakeBusybox(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "busybox")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestArchive checks the OCI archive: index.json names the image for ctr,
// every blob matches its digest, and the config's diff ID is the layer's.
func TestArchive(t *testing.T) {
	layer, err := buildLayer(fakeBusybox(t))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "busybox.tar")
	if err := writeArchive(path, layer); err != nil {
		t.Fatal(err)
	}
	files := readTar(t, path)
	var idx ocispec.Index
	mustUnmarshal(t, files["index.json"], &idx)
	if len(idx.Manifests) != 1 || idx.Manifests[0].Annotations["io.containerd.image.name"] != imageName {
		t.Fatalf("index.json: %+v", idx)
	}
	for name, b := range files {
		if enc, ok := strings.CutPrefix(name, "blobs/sha256/"); ok && digest.FromBytes(b).Encoded() != enc {
			t.Errorf("blob %s does not match its digest", name)
		}
	}
	var m ocispec.Manifest
	mustUnmarshal(t, files["blobs/sha256/"+idx.Manifests[0].Digest.Encoded()], &m)
	var cfg ocispec.Image
	mustUnmarshal(t, files["blobs/sha256/"+m.Config.Digest.Encoded()], &cfg)
	if len(m.Layers) != 1 || len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != digest.FromBytes(layer) ||
		m.Layers[0].MediaType != ocispec.MediaTypeImageLayer {
		t.Errorf("manifest %+v, config rootfs %+v", m, cfg.RootFS)
	}
	again, err := buildLayer(fakeBusybox(t))
	if err != nil || !bytes.Equal(again, layer) {
		t.Errorf("a rebuild differs: %v", err)
	}
}

func readTar(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if files[h.Name], err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}
}

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
}

// TestUnpackLayer checks the floor's rootfs: busybox and its links, true
// among them.
func TestUnpackLayer(t *testing.T) {
	bb := fakeBusybox(t)
	layer, err := buildLayer(bb)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := unpackLayer(layer, dir); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(bb)
	if got, err := os.ReadFile(filepath.Join(dir, "bin", "true")); err != nil || !bytes.Equal(got, want) {
		t.Errorf("bin/true: %v", err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "bin", "sleep")); err != nil || l != "busybox" {
		t.Errorf("bin/sleep links to %q, %v", l, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "bin", "busybox"))
	if err != nil || fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("bin/busybox not executable: %v %v", fi, err)
	}
}

func TestUnpackLayerRefusesEscape(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "../evil", Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	root := t.TempDir()
	if err := unpackLayer(buf.Bytes(), filepath.Join(root, "rootfs")); err == nil {
		t.Error("unpacked an entry outside the rootfs")
	}
	if _, err := os.Stat(filepath.Join(root, "evil")); err == nil {
		t.Error("wrote outside the rootfs")
	}
}

func TestFloorSpec(t *testing.T) {
	in := `{"ociVersion":"1.0.2-dev","process":{"terminal":true,"user":{"uid":0,"gid":0},"args":["sh"],"cwd":"/"},` +
		`"root":{"path":"rootfs","readonly":true},"hostname":"runc","linux":{"namespaces":[{"type":"pid"}]}}`
	b, err := floorSpec([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var s rspec.Spec
	mustUnmarshal(t, b, &s)
	if s.Process.Terminal || len(s.Process.Args) != 1 || s.Process.Args[0] != "true" ||
		s.Root.Path != "rootfs" || !s.Root.Readonly || s.Hostname != "runc" || len(s.Linux.Namespaces) != 1 {
		t.Errorf("adjusted spec: %s", b)
	}
	if _, err := floorSpec([]byte(`{"ociVersion":"1.0.2"}`)); err == nil {
		t.Error("a spec without process was accepted")
	}
}

func TestPercentile(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		var ds []time.Duration
		for _, x := range xs {
			ds = append(ds, time.Duration(x)*time.Millisecond)
		}
		return ds
	}
	for _, c := range []struct {
		in   []time.Duration
		p    int
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(3, 1, 2), 50, 2 * time.Millisecond},
		{ms(4, 1, 3, 2), 50, 2500 * time.Microsecond},
		{ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 90, 9 * time.Millisecond},
		{ms(20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 90, 18 * time.Millisecond},
		{ms(5), 90, 5 * time.Millisecond},
	} {
		if got := percentile(c.in, c.p); got != c.want {
			t.Errorf("p%d of %v = %v, want %v", c.p, c.in, got, c.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	runs := func(ms ...int) []sample {
		var s []sample
		for _, m := range ms {
			s = append(s, sample{Wall: time.Duration(m) * time.Millisecond})
		}
		return s
	}
	r := &report{
		Latency: []*series{
			{Name: "berthd", Runs: runs(150, 140, 160)},
			{Name: "containerd", Runs: runs(400, 380, 390)},
			{Name: floorName, Runs: runs(80, 70, 75)},
		},
		Memory: []memReading{
			{Daemon: "berthd", Shim: "berth-shim-runc-v2"},
			{Daemon: "containerd", Shim: "containerd-shim-runc-v2"},
		},
	}
	r.Memory[0].ShimMem.VmRSS, r.Memory[1].ShimMem.VmRSS = 6<<10, 13<<10
	r.Memory[0].DaemonMem.VmRSS, r.Memory[1].DaemonMem.VmRSS = 18<<10, 45<<10
	r.summarize()
	s := r.Summary
	if s.BerthdOverContainerd != 150.0/390 || s.BerthdOverFloor != 2 || !s.MetLatency || !s.MetShimRSS || s.ShimRSS != 6.0/13 {
		t.Errorf("summary %+v", s)
	}
	var out strings.Builder
	r.print(&out)
	for _, want := range []string{"berthd / containerd   0.38  (goal ≤ 0.40: met)", "berth-shim-runc-v2", "shim VmRSS berthd / containerd    0.46"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// versionServer answers Version, or NotFound when the namespace header is
// "missing", so that the proxy's relaying of metadata and errors shows.
type versionServer struct {
	versionapi.UnimplementedVersionServer
}

func (versionServer) Version(ctx context.Context, _ *emptypb.Empty) (*versionapi.VersionResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if ns := md.Get("containerd-namespace"); len(ns) == 0 || ns[0] == "missing" {
		return nil, status.Error(codes.NotFound, "no namespace")
	}
	return &versionapi.VersionResponse{Version: "v9"}, nil
}

func TestProxy(t *testing.T) {
	dir := t.TempDir()
	lis, err := net.Listen("unix", filepath.Join(dir, "d.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	versionapi.RegisterVersionServer(srv, versionServer{})
	go srv.Serve(lis)
	defer srv.Stop()
	p, err := startProxy(filepath.Join(dir, "p.sock"), filepath.Join(dir, "d.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	conn, err := grpc.NewClient("unix://"+p.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := versionapi.NewVersionClient(conn)
	p.reset(time.Now())
	ctx := metadata.AppendToOutgoingContext(context.Background(), "containerd-namespace", "bench")
	if resp, err := c.Version(ctx, &emptypb.Empty{}); err != nil || resp.Version != "v9" {
		t.Fatalf("through the proxy: %v, %v", resp, err)
	}
	ctx = metadata.AppendToOutgoingContext(context.Background(), "containerd-namespace", "missing")
	if _, err := c.Version(ctx, &emptypb.Empty{}); status.Code(err) != codes.NotFound {
		t.Errorf("error through the proxy: %v", err)
	}
	calls := p.take()
	if len(calls) != 2 || calls[0].Method != "/containerd.services.version.v1.Version/Version" ||
		calls[0].Err != "" || calls[1].Err == "" || calls[0].End < calls[0].Start {
		t.Errorf("calls %+v", calls)
	}
}

func TestShortMethod(t *testing.T) {
	if got := shortMethod("/containerd.services.tasks.v1.Tasks/Create"); got != "Tasks/Create" {
		t.Errorf("got %q", got)
	}
}

func TestTraceSummary(t *testing.T) {
	ms := func(x int) time.Duration { return time.Duration(x) * time.Millisecond }
	run := func(wall int, calls ...rpcCall) traceRun { return traceRun{Wall: ms(wall), Calls: calls} }
	s := &traceSeries{Name: "berthd", Runs: []traceRun{
		run(100, rpcCall{Method: "/a.A/Get", Start: ms(10), End: ms(12)}, rpcCall{Method: "/t.Tasks/Create", Start: ms(20), End: ms(80)}),
		run(120, rpcCall{Method: "/a.A/Get", Start: ms(12), End: ms(13)}, rpcCall{Method: "/a.A/Get", Start: ms(14), End: ms(15)},
			rpcCall{Method: "/t.Tasks/Create", Start: ms(20), End: ms(100)}),
		run(90, rpcCall{Method: "/t.Tasks/Create", Start: ms(8), End: ms(70)}),
	}}
	s.summarize()
	if s.Wall != ms(100) || s.BeforeFirst != ms(10) || s.AfterLast != ms(20) || len(s.Methods) != 2 ||
		s.Methods[0].Method != "/a.A/Get" || s.Methods[0].Calls != 1 || s.Methods[0].Time != ms(2) ||
		s.Methods[1].Time != ms(62) {
		t.Errorf("summary %+v", s)
	}
	var out strings.Builder
	printTrace(&out, []*traceSeries{s})
	if !strings.Contains(out.String(), "Tasks/Create") || !strings.Contains(out.String(), "median traced run (100.0 ms)") {
		t.Errorf("trace table:\n%s", out.String())
	}
}

// TestBench runs the whole bench, briefly, as root, with the berthd named
// by $BERTHD (berth-shim-runc-v2 beside it) or one built here. It checks
// that the bench works, not any figure.
func TestBench(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestBench runs containers: run it as root")
	}
	berthd := os.Getenv("BERTHD")
	if berthd == "" {
		dir := t.TempDir()
		cmd := exec.Command("go", "build", "-tags", "grpcnotrace", "-o", dir+"/",
			"github.com/berth-dev/berth/cmd/berthd", "github.com/berth-dev/berth/cmd/berth-shim-runc-v2")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build berthd and its shim: %v\n%s", err, out)
		}
		berthd = filepath.Join(dir, "berthd")
	}
	o := options{berthd: berthd, containerd: "/usr/bin/containerd", ctr: "/usr/bin/ctr", runc: "/usr/sbin/runc",
		busybox: "/bin/busybox", runs: 2, warmup: 1, trace: 1, settle: 100 * time.Millisecond, floor: true, memory: true}
	for _, p := range []string{berthd, filepath.Join(filepath.Dir(berthd), "berth-shim-runc-v2"), o.containerd, o.ctr, o.runc, o.busybox} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s is needed (scripts/setup.sh test installs containerd, runc, busybox-static): %v", p, err)
		}
	}
	o.workdir = t.TempDir()
	e := &env{o: o, dir: filepath.Join(o.workdir, "run")}
	rep := newReport(o)
	err := e.setup(context.Background())
	if err == nil {
		err = e.measureLatency(context.Background(), rep)
	}
	if err == nil {
		rep.Trace, err = e.measureTrace(context.Background())
	}
	if err == nil {
		rep.Memory, err = e.measureMemory(context.Background())
	}
	if cerr := e.cleanup(); cerr != nil {
		t.Errorf("clean up: %v", cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	rep.summarize()
	if rep.Summary.BerthdOverContainerd == 0 || rep.Summary.BerthdOverFloor == 0 || rep.Summary.ShimRSS == 0 ||
		len(rep.Trace) != 2 || len(rep.Trace[0].Methods) == 0 {
		t.Errorf("incomplete report: %+v", rep.Summary)
	}
	if _, err := os.Stat(e.dir); !os.IsNotExist(err) {
		t.Errorf("%s left behind: %v", e.dir, err)
	}
}
