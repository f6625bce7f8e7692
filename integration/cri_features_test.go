package integration

// The CRI's optional features through crictl v1.37.0 against a real
// berthd and runc: recursive read-only mounts announced in the runtime
// handlers' features and applied to submounts, image volumes (an image's
// file system, or a directory of it, mounted read-only) and the CRI
// metrics (descriptors, and pod metrics from the cgroups and /proc).

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCRIFeatures(t *testing.T) {
	t.Parallel()
	e := newCRIPodEnv(t)
	d := e.d

	var info struct {
		RuntimeHandlers []struct {
			Name     string `json:"name"`
			Features struct {
				RRO bool `json:"recursive_read_only_mounts"`
			} `json:"features"`
		} `json:"runtimeHandlers"`
	}
	if err := json.Unmarshal([]byte(d.mustCrictl("info")), &info); err != nil {
		t.Fatal(err)
	}
	rro := map[string]bool{}
	for _, h := range info.RuntimeHandlers {
		rro[h.Name] = h.Features.RRO
	}
	if !rro[""] || !rro["runc"] || rro["runsc"] {
		t.Errorf("recursive read-only mounts by handler %v, want the default and runc (runc 1.1 lists rro), not runsc", rro)
	}

	podCfg := e.podConfig("features", nil)
	pod := strings.TrimSpace(d.mustCrictl("runp", podCfg))
	t.Run("recursive read-only", func(t *testing.T) { checkRecursiveReadOnly(t, e, pod, podCfg) })
	t.Run("image volumes", func(t *testing.T) { checkImageVolumes(t, e, pod, podCfg) })
	t.Run("metrics", func(t *testing.T) { checkCRIMetrics(t, e, pod, podCfg) })
}

// mountContainer writes a config of a container sleeping with mounts.
func (e *criPodEnv) mountContainer(name string, mounts ...map[string]any) string {
	e.t.Helper()
	return writeJSONFile(e.t, map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": e.image},
		"command":  []string{"/bin/busybox", "sleep", "3600"},
		"mounts":   mounts,
	})
}

func checkRecursiveReadOnly(t *testing.T, e *criPodEnv, pod, podCfg string) {
	d := e.d
	host := t.TempDir()
	sub := filepath.Join(host, "tmpfs")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("none", sub, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(sub, unix.MNT_DETACH) })

	ro := map[string]any{"container_path": "/mnt", "host_path": host, "readonly": true}
	rroMount := map[string]any{"container_path": "/mnt", "host_path": host, "readonly": true, "recursive_read_only": true}
	plain := strings.TrimSpace(d.mustCrictl("create", pod, e.mountContainer("ro", ro), podCfg))
	d.mustCrictl("start", plain)
	checkExec(t, d, plain, []string{"/bin/sh", "-c", "touch /mnt/tmpfs/f && echo writable"}, "writable\n")

	ctr := strings.TrimSpace(d.mustCrictl("create", pod, e.mountContainer("rro", rroMount), podCfg))
	d.mustCrictl("start", ctr)
	checkExec(t, d, ctr, []string{"/bin/sh", "-c", "touch /mnt/tmpfs/g 2>&1 | grep -q 'Read-only file system' && echo refused"}, "refused\n")

	rw := map[string]any{"container_path": "/mnt", "host_path": host, "readonly": false, "recursive_read_only": true}
	if msg := d.crictlFails("create", pod, e.mountContainer("rro-rw", rw), podCfg); !strings.Contains(msg, "readonly is false") {
		t.Errorf("recursive read-only mount with readonly false: %s", msg)
	}
	shared := map[string]any{"container_path": "/mnt", "host_path": host, "readonly": true, "recursive_read_only": true, "propagation": 2}
	if msg := d.crictlFails("create", pod, e.mountContainer("rro-shared", shared), podCfg); !strings.Contains(msg, "PROPAGATION_PRIVATE") {
		t.Errorf("recursive read-only mount with bidirectional propagation: %s", msg)
	}
	for _, id := range []string{plain, ctr} {
		d.mustCrictl("rm", "-f", id)
	}
}

func checkImageVolumes(t *testing.T, e *criPodEnv, pod, podCfg string) {
	d := e.d
	imageID := e.inspectImageID()
	whole := map[string]any{"container_path": "/vol", "readonly": true, "image": map[string]any{"image": e.image}}
	bin := map[string]any{"container_path": "/bin-of-image", "readonly": true, "image": map[string]any{"image": e.image}, "image_sub_path": "bin"}
	ctr := strings.TrimSpace(d.mustCrictl("create", pod, e.mountContainer("volumes", whole, bin), podCfg))

	var st struct {
		Status struct {
			Mounts []struct {
				ContainerPath string `json:"containerPath"`
				Image         struct {
					ImageRef string `json:"imageRef"`
				} `json:"image"`
			} `json:"mounts"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(d.mustCrictl("inspect", ctr)), &st); err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Status.Mounts {
		if m.Image.ImageRef != imageID {
			t.Errorf("mount %s: image_ref %q, want the image's ID %s", m.ContainerPath, m.Image.ImageRef, imageID)
		}
	}
	d.mustCrictl("start", ctr)
	checkExec(t, d, ctr, []string{"/vol/bin/busybox", "echo", "runs-from-volume"}, "runs-from-volume\n")
	checkExec(t, d, ctr, []string{"/bin/sh", "-c", "touch /vol/x 2>&1 | grep -q 'Read-only file system' && echo refused"}, "refused\n")
	checkExec(t, d, ctr, []string{"/bin/sh", "-c", "test -f /bin-of-image/busybox && test ! -e /bin-of-image/bin && echo sub"}, "sub\n")

	if msg := d.crictlFails("create", pod, e.mountContainer("rw-volume",
		map[string]any{"container_path": "/vol", "image": map[string]any{"image": e.image}}), podCfg); !strings.Contains(msg, "must be read-only") {
		t.Errorf("read-write image volume: %s", msg)
	}
	missing := map[string]any{"container_path": "/vol", "readonly": true, "image": map[string]any{"image": e.image}, "image_sub_path": "not-there"}
	if msg := d.crictlFails("create", pod, e.mountContainer("missing-sub", missing), podCfg); !strings.Contains(msg, "not in the image") {
		t.Errorf("image volume with a missing sub path: %s", msg)
	}

	d.mustCrictl("rm", "-f", ctr)
	if out := d.mustCtr("-n", "k8s.io", "snapshots", "ls"); strings.Contains(out, "-volume-") {
		t.Errorf("image volume snapshots left after the container's removal:\n%s", out)
	}
	if entries, _ := filepath.Glob(filepath.Join(d.Root, "io.containerd.grpc.v1.cri", "volumes", "*")); len(entries) > 0 {
		t.Errorf("image volume mount points left: %v", entries)
	}
}

// inspectImageID is the ID of the containers' image.
func (e *criPodEnv) inspectImageID() string {
	e.t.Helper()
	var st struct {
		Status struct {
			ID string `json:"id"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(e.d.mustCrictl("inspecti", e.image)), &st); err != nil {
		e.t.Fatal(err)
	}
	return st.Status.ID
}

func checkCRIMetrics(t *testing.T, e *criPodEnv, pod, podCfg string) {
	d := e.d
	var descs struct {
		Descriptors []struct {
			Name      string   `json:"name"`
			Help      string   `json:"help"`
			LabelKeys []string `json:"labelKeys"`
		} `json:"descriptors"`
	}
	if err := json.Unmarshal([]byte(d.mustCrictl("metricdescs", "-o", "json")), &descs); err != nil {
		t.Fatal(err)
	}
	keys := map[string]int{}
	for _, desc := range descs.Descriptors {
		if desc.Help == "" || len(desc.LabelKeys) == 0 {
			t.Errorf("descriptor %+v lacks help or labels", desc)
		}
		keys[desc.Name] = len(desc.LabelKeys)
	}

	cfg := writeJSONFile(t, map[string]any{
		"metadata": map[string]any{"name": "metered"},
		"image":    map[string]any{"image": e.image},
		"command":  []string{"/bin/busybox", "sleep", "3600"},
		"linux": map[string]any{"resources": map[string]any{
			"cpu_period": 100000, "cpu_quota": 20000, "cpu_shares": 1024, "memory_limit_in_bytes": 64 << 20,
		}},
	})
	ctr := strings.TrimSpace(d.mustCrictl("create", pod, cfg, podCfg))
	d.mustCrictl("start", ctr)

	type metric struct {
		Name        string   `json:"name"`
		LabelValues []string `json:"labelValues"`
		Value       struct {
			Value string `json:"value"`
		} `json:"value"`
	}
	var out struct {
		PodMetrics []struct {
			PodSandboxID     string   `json:"podSandboxId"`
			Metrics          []metric `json:"metrics"`
			ContainerMetrics []struct {
				ContainerID string   `json:"containerId"`
				Metrics     []metric `json:"metrics"`
			} `json:"containerMetrics"`
		} `json:"podMetrics"`
	}
	if err := json.Unmarshal([]byte(d.mustCrictl("metricsp", "-o", "json")), &out); err != nil {
		t.Fatal(err)
	}
	found := map[string]metric{}
	for _, p := range out.PodMetrics {
		if p.PodSandboxID != pod {
			continue
		}
		all := p.Metrics
		for _, c := range p.ContainerMetrics {
			if c.ContainerID == ctr {
				all = append(all, c.Metrics...)
			}
		}
		for _, m := range all {
			if _, ok := found[m.Name]; !ok {
				found[m.Name] = m
			}
		}
	}
	for _, name := range []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
		"container_network_receive_bytes_total", "container_processes", "container_fs_usage_bytes", "container_start_time_seconds"} {
		if _, ok := found[name]; !ok {
			t.Errorf("pod metrics lack %s", name)
		}
	}
	for name, n := range keys {
		if m, ok := found[name]; ok && len(m.LabelValues) != n {
			t.Errorf("%s: %d label values, its descriptor has %d keys", name, len(m.LabelValues), n)
		}
	}
	if m := found["container_spec_memory_limit_bytes"]; m.Value.Value != "67108864" {
		t.Errorf("container_spec_memory_limit_bytes = %q, want 67108864", m.Value.Value)
	}
	if m := found["container_processes"]; m.Value.Value == "" || m.Value.Value == "0" {
		t.Errorf("container_processes = %q, want the sleeping process", m.Value.Value)
	}
	d.mustCrictl("rm", "-f", ctr)
}
