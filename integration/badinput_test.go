package integration

import (
	"strings"
	"testing"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, toml string
		want       []string // besides the file name
	}{
		{"malformed TOML", "version = 2\nroot = \"/x\"\n[grpc\n  address = \"/y\"\n", []string{":3:"}},
		{"wrong type", "version = 2\n\n[grpc]\n  uid = \"abc\"\n", []string{":4:", "grpc.uid", "integer"}},
		{"unterminated string", "version = 2\nstate = \"/run/x\n", []string{":2:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newDaemon(t, withConfig(tc.toml))
			out, code := d.runBerthd()
			if code == 0 {
				t.Fatalf("berthd with a broken config exited 0, want an error; output:\n%s", out)
			}
			for _, want := range append([]string{d.Config}, tc.want...) {
				if !strings.Contains(out, want) {
					t.Errorf("berthd output %q lacks %q", out, want)
				}
			}
			if exists(d.Address) {
				t.Errorf("berthd with a broken config left socket %s", d.Address)
			}
		})
	}
}

func TestUnknownConfigKeys(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, withConfig(`version = 2
bogus_top = 1

[grpc]
  bogus_grpc = "x"

[plugins."io.containerd.gc.v1.scheduler"]
  bogus_gc = true
`))
	d.mustCtr("namespaces", "ls")
	logged := d.log()
	for key, line := range map[string]string{"bogus_top": ":2:", "bogus_grpc": ":5:", "bogus_gc": ":8:"} {
		var warnings []string
		for _, l := range strings.Split(logged, "\n") {
			if strings.Contains(l, key) && strings.Contains(l, "level=WARN") {
				warnings = append(warnings, l)
			}
		}
		if len(warnings) != 1 {
			t.Errorf("warnings about %s = %q, want exactly one", key, warnings)
			continue
		}
		if !strings.Contains(warnings[0], d.Config+line) {
			t.Errorf("warning %q does not name %s%s", warnings[0], d.Config, line)
		}
	}
	if strings.Contains(logged, "level=ERROR") {
		t.Errorf("berthd logged errors for unknown keys:\n%s", logged)
	}
}

func TestLabelLimit(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	d.mustCtr("namespaces", "create", "x")
	big := "k=" + strings.Repeat("v", 5000)
	for _, args := range [][]string{
		{"namespaces", "label", "x", big},
		{"namespaces", "create", "y", big},
		{"leases", "create", "--id", "l", big},
	} {
		stderr := d.ctrFails(args...)
		if !strings.Contains(stderr, "4096") || !strings.Contains(stderr, "invalid argument") {
			t.Errorf("ctr %s k=<5000 bytes>: stderr %q, want it to name the 4096 byte limit", strings.Join(args[:len(args)-1], " "), stderr)
		}
	}
	// Exactly at the limit is fine.
	d.mustCtr("namespaces", "label", "x", "k="+strings.Repeat("v", 4095))
	if got := namespaceLabels(t, d.mustCtr("namespaces", "ls")); len(got) != 1 {
		t.Errorf("namespaces after refused creates = %v, want only x", got)
	}
}

func TestNotFoundHint(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	img := buildOCIArchive(t, "example.com/berth/hint:1")
	importImage(t, d, "default", img.archive, "--no-unpack")

	for _, args := range [][]string{
		{"images", "tag", img.name, "example.com/berth/hint:2"},
		{"images", "label", img.name, "k=v"},
		{"content", "get", img.blobs[0]},
	} {
		stderr := d.ctrFails(append([]string{"-n", "k8s.io"}, args...)...)
		for _, want := range []string{`namespace "k8s.io"`, `namespace "default"`, "not found"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("ctr -n k8s.io %s: stderr %q, want it to contain %q", strings.Join(args, " "), stderr, want)
			}
		}
	}
	// ctr images rm hides a NotFound behind "image not found"; the API
	// error carries the hint.
	_, err := imagesapi.NewImagesClient(d.client()).Delete(nsContext(t, "k8s.io", ""), &imagesapi.DeleteImageRequest{Name: img.name})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `namespace "default"`) {
		t.Errorf("delete of %s in k8s.io: %v, want NotFound naming namespace \"default\"", img.name, err)
	}
	// Nothing was removed from default.
	if got := imageNames(t, d.mustCtr("images", "ls")); len(got) != 1 {
		t.Errorf("images in default = %q, want %s still there", got, img.name)
	}
	// A name found nowhere gets no hint.
	stderr := d.ctrFails("-n", "k8s.io", "images", "tag", "example.com/nowhere:1", "x:1")
	if strings.Contains(stderr, "exists in") {
		t.Errorf("tag of an image in no namespace: stderr %q, want no hint", stderr)
	}
}
