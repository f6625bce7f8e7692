package integration

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/version"
	"github.com/google/uuid"
)

// serverFields parses the "Server:" section of `ctr version`.
func serverFields(t *testing.T, out string) map[string]string {
	t.Helper()
	_, server, ok := strings.Cut(out, "Server:")
	if !ok {
		t.Fatalf("ctr version printed no Server section:\n%s", out)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(server, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields
}

func TestVersion(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	first := serverFields(t, d.mustCtr("version"))
	if builtHere && first["Version"] != version.Version {
		t.Errorf("server Version = %q, want %q", first["Version"], version.Version)
	}
	if first["Version"] == "" {
		t.Errorf("server Version is empty")
	}
	if _, err := uuid.Parse(first["UUID"]); err != nil {
		t.Fatalf("server UUID = %q: %v", first["UUID"], err)
	}

	d.stop()
	d.start()
	again := serverFields(t, d.mustCtr("version"))
	if again["UUID"] != first["UUID"] {
		t.Errorf("UUID after restart on the same root = %q, want %q (persisted)", again["UUID"], first["UUID"])
	}
}

// pluginStatus parses `ctr plugins ls` into "TYPE ID" -> STATUS.
func pluginStatus(t *testing.T, out string) map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "TYPE") {
		t.Fatalf("ctr plugins ls printed no table:\n%s", out)
	}
	status := map[string]string{}
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) != 4 {
			t.Fatalf("plugins ls row %q has %d columns, want 4", line, len(f))
		}
		status[f[0]+" "+f[1]] = f[3]
	}
	return status
}

// servedPlugins are the plugins berthd serves so far.
var servedPlugins = []string{
	"io.containerd.event.v1 exchange",
	"io.containerd.content.v1 content",
	"io.containerd.snapshotter.v1 overlayfs",
	"io.containerd.snapshotter.v1 native",
	"io.containerd.differ.v1 walking",
	"io.containerd.metadata.v1 bolt",
	"io.containerd.gc.v1 scheduler",
	"io.containerd.lease.v1 manager",
	"io.containerd.grpc.v1 version",
	"io.containerd.grpc.v1 introspection",
	"io.containerd.grpc.v1 namespaces",
	"io.containerd.grpc.v1 content",
	"io.containerd.grpc.v1 images",
	"io.containerd.grpc.v1 containers",
	"io.containerd.grpc.v1 leases",
	"io.containerd.grpc.v1 snapshots",
	"io.containerd.grpc.v1 diff",
	"io.containerd.grpc.v1 events",
	"io.containerd.transfer.v1 local",
	"io.containerd.grpc.v1 streaming",
	"io.containerd.grpc.v1 transfer",
}

func TestPlugins(t *testing.T) {
	t.Parallel()
	t.Run("all ok", func(t *testing.T) {
		t.Parallel()
		d := startDaemon(t)
		got := pluginStatus(t, d.mustCtr("plugins", "ls"))
		for _, p := range servedPlugins {
			if got[p] != "ok" {
				t.Errorf("plugin %s: status %q, want ok", p, got[p])
			}
		}
		for p, st := range got {
			if st != "ok" {
				t.Errorf("plugin %s: status %q, want ok", p, st)
			}
		}
	})
	t.Run("broken gc config", func(t *testing.T) {
		t.Parallel()
		d := startDaemon(t, withBrokenGC, withConfig("version = 2\n\n[plugins.\"io.containerd.gc.v1.scheduler\"]\n  schedule_delay = \"banana\"\n"))
		got := pluginStatus(t, d.mustCtr("plugins", "ls"))
		for _, p := range servedPlugins {
			want := "ok"
			if p == "io.containerd.gc.v1 scheduler" {
				want = "error"
			}
			if got[p] != want {
				t.Errorf("plugin %s: status %q, want %s", p, got[p], want)
			}
		}
		detail := d.mustCtr("plugins", "ls", "-d", "type==io.containerd.gc.v1")
		for _, want := range []string{"scheduler", "Error:", `schedule_delay "banana"`} {
			if !strings.Contains(detail, want) {
				t.Errorf("ctr plugins ls -d lacks %q:\n%s", want, detail)
			}
		}
		if strings.Contains(detail, "io.containerd.content.v1") {
			t.Errorf("ctr plugins ls -d type==io.containerd.gc.v1 lists other types:\n%s", detail)
		}
		// The rest of the daemon works, synchronous deletes included.
		d.mustCtr("namespaces", "create", "works")
		d.mustCtrIn(strings.NewReader("still serving"), "-n", "works", "content", "ingest", "r")
		dgst := digestOf([]byte("still serving"))
		d.mustCtr("-n", "works", "content", "rm", dgst)
		d.collectGarbage()
		if exists(d.blobPath(dgst)) {
			t.Errorf("blob %s still on disk after rm and a synchronous collection", dgst)
		}
	})
}

func TestSocket(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	for _, sock := range []string{d.Address, d.Address + ".ttrpc"} {
		fi, err := os.Stat(sock)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
			t.Errorf("%s: mode %v, want srw-rw----", sock, fi.Mode())
		}
	}
	fi, err := os.Stat(filepath.Dir(d.Address))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o711 {
		t.Errorf("socket directory %s (created by berthd): mode %v, want drwx--x--x", filepath.Dir(d.Address), fi.Mode())
	}

	// Another daemon, on another root, must not take over the socket.
	other := newDaemon(t)
	other.Address = d.Address
	out, code := other.runBerthd()
	if code == 0 || !strings.Contains(out, d.Address) || !strings.Contains(out, "in use") {
		t.Errorf("berthd on another root and the same address: exit %d, output %q; want an error naming the socket in use", code, out)
	}
	d.mustCtr("version")

	d.stop()
	for _, sock := range []string{d.Address, d.Address + ".ttrpc"} {
		if exists(sock) {
			t.Errorf("%s still exists after SIGTERM, want it removed", sock)
		}
	}
}

func TestSocketOwner(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, withConfig("version = 2\n\n[grpc]\n  gid = 4242\n"))
	fi, err := os.Stat(d.Address)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 0 || st.Gid != 4242 {
		t.Errorf("socket owner %d:%d, want 0:4242 from [grpc] gid", st.Uid, st.Gid)
	}
	d.mustCtr("version")
}

// TestShutdownEndsSubscriptions stops berthd while `ctr events` listens:
// a subscription never ends by itself, and must not hold the graceful stop
// up (dockerd, for one, always has one open).
func TestShutdownEndsSubscriptions(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	events := d.ctrBackground(nil, "events")
	subscribed(t, d, events)
	if took := d.stop(); took > 2*time.Second {
		t.Errorf("berthd took %s to exit after SIGTERM with a subscriber, want under 2s", took.Round(time.Millisecond))
	}
	if !events.wait(5 * time.Second) {
		t.Fatal("ctr events still running after berthd exited")
	}
	if events.err == nil {
		t.Errorf("ctr events exited 0 when berthd stopped, want an error")
	}
	if got := events.stderr.String(); !strings.Contains(got, "shutting down") {
		t.Errorf("ctr events stderr %q, want it to say berthd is shutting down", got)
	}
}
