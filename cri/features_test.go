package cri

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/berth-dev/berth/runtime/handler"
	cgstats "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestCRIMountRecursiveReadOnly(t *testing.T) {
	dir := t.TempDir()
	m, _, err := criMount(&runtime.Mount{ContainerPath: "/mnt", HostPath: dir, Readonly: true, RecursiveReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"rbind", "rprivate", "ro", "rro"}; !slices.Equal(m.Options, want) {
		t.Errorf("options %q, want %q", m.Options, want)
	}
	for _, bad := range []*runtime.Mount{
		{ContainerPath: "/mnt", HostPath: dir, RecursiveReadOnly: true},
		{ContainerPath: "/mnt", HostPath: dir, Readonly: true, RecursiveReadOnly: true, Propagation: runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
		{ContainerPath: "/mnt", HostPath: dir, Readonly: true, RecursiveReadOnly: true, Propagation: runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL},
	} {
		if _, _, err := criMount(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%v: %v, want InvalidArgument", bad, err)
		}
	}
}

// TestFeatureProbe checks the probe against a fake runtime binary: rro
// when its features list it, nothing for another runtime type.
func TestFeatureProbe(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "fake-runc")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho '{\"mountOptions\": [\"ro\", \"rro\"]}'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(dir, "old-runc")
	if err := os.WriteFile(old, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var p featureProbe
	ctx := context.Background()
	withRRO := p.supportsRRO(ctx, &handler.Handler{RuntimeType: handler.RuncV2, Options: map[string]any{"BinaryName": fake}})
	if withRRO != kernelHasMountSetattr() {
		t.Errorf("runtime listing rro: supported %v, kernel has mount_setattr %v", withRRO, kernelHasMountSetattr())
	}
	if p.supportsRRO(ctx, &handler.Handler{RuntimeType: handler.RuncV2, Options: map[string]any{"BinaryName": old}}) {
		t.Error("a runtime without a features command supports rro")
	}
	if p.supportsRRO(ctx, &handler.Handler{RuntimeType: handler.RunscV1}) {
		t.Error("runsc supports rro")
	}
	if _, err := exec.LookPath("runc"); err == nil && kernelHasMountSetattr() && !runtimeMountOption(ctx, "runc", "rro") {
		t.Log("this host's runc does not list rro (runc < 1.1)")
	}
}

func TestImageSubPath(t *testing.T) {
	for sub, ok := range map[string]bool{"": true, "etc": true, "usr/../etc": true, "../x": false, "/etc": false, "..": false} {
		_, err := imageSubPath(&runtime.Mount{ImageSubPath: sub, Image: &runtime.ImageSpec{Image: "img"}})
		if (err == nil) != ok {
			t.Errorf("sub path %q: %v", sub, err)
		}
	}
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := insideDir(root, filepath.Join(root, "etc")); err != nil {
		t.Error(err)
	}
	if err := insideDir(root, filepath.Join(root, "missing")); !errdefs.IsNotFound(err) {
		t.Errorf("missing sub path: %v, want NotFound", err)
	}
	if err := insideDir(root, filepath.Join(root, "escape")); !errdefs.IsInvalidArgument(err) {
		t.Errorf("sub path through a link out of the image: %v, want InvalidArgument", err)
	}
}

// TestMetricLabels checks that every metric has as many label values as
// its descriptor has keys, the contract the kubelet relies on.
func TestMetricLabels(t *testing.T) {
	keys := map[string]int{}
	for _, d := range metricDescriptors() {
		if d.GetHelp() == "" {
			t.Errorf("%s has no help", d.GetName())
		}
		keys[d.GetName()] = len(d.GetLabelKeys())
	}
	m := &cgstats.Metrics{
		CPU:    &cgstats.CPUStat{Usage: &cgstats.CPUUsage{Total: 3e9, User: 2e9, Kernel: 1e9}},
		Memory: &cgstats.MemoryStat{Usage: &cgstats.MemoryEntry{Usage: 100, Limit: 1000}, TotalInactiveFile: 10},
		Pids:   &cgstats.PidsStat{Current: 2, Limit: 10},
		Blkio: &cgstats.BlkIOStat{
			IoServiceBytesRecursive: []*cgstats.BlkIOEntry{{Op: "Read", Major: 8, Value: 4096}},
			IoServicedRecursive:     []*cgstats.BlkIOEntry{{Op: "Write", Major: 8, Value: 1}},
		},
	}
	set := &metricSet{base: []string{"c", "id", "img", "pod"}}
	cgroupMetrics(set, m)
	processMetrics(set, uint32(os.Getpid()))
	specMetrics(set, &runtime.LinuxContainerResources{CpuPeriod: 100000, MemoryLimitInBytes: 64 << 20})
	podNetworkMetrics(set, uint32(os.Getpid()))
	got := map[string]uint64{}
	for _, x := range set.out {
		n, ok := keys[x.GetName()]
		if !ok {
			t.Errorf("metric %s has no descriptor", x.GetName())
		} else if len(x.GetLabelValues()) != n {
			t.Errorf("%s: %d label values, %d keys", x.GetName(), len(x.GetLabelValues()), n)
		}
		if _, seen := got[x.GetName()]; !seen {
			got[x.GetName()] = x.GetValue().GetValue()
		}
	}
	want := map[string]uint64{
		"container_cpu_usage_seconds_total":  3,
		"container_memory_working_set_bytes": 90,
		"container_processes":                2,
		"container_fs_reads_bytes_total":     4096,
		"container_fs_writes_total":          1,
		"container_spec_memory_limit_bytes":  64 << 20,
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s = %d, want %d", name, got[name], v)
		}
	}
	if got["container_threads"] == 0 || got["container_file_descriptors"] == 0 {
		t.Errorf("threads %d, file descriptors %d of the test process", got["container_threads"], got["container_file_descriptors"])
	}
}
