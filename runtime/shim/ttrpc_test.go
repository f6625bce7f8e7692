package shim

import (
	"context"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// serveTTRPC serves s as the shim does and returns a client of it.
func serveTTRPC(t *testing.T, s *Service) *ttrpc.Client {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(ErrorInterceptor))
	if err != nil {
		t.Fatal(err)
	}
	s.RegisterTTRPC(srv)
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })
	conn, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	client := ttrpc.NewClient(conn)
	t.Cleanup(func() { client.Close() })
	return client
}

// The task service answers clients of both APIs: containerd's generated
// v3 client included, which the shim itself does not link.
func TestTaskAPIv2AndV3(t *testing.T) {
	s, _, _ := testService(t)
	testContainer(s)
	client := serveTTRPC(t, s)
	ctx := context.Background()

	v2, err := taskv2.NewTaskClient(client).Connect(ctx, &taskv2.ConnectRequest{ID: "c"})
	if err != nil || v2.ShimPid != uint32(os.Getpid()) || v2.TaskPid != 100 {
		t.Errorf("v2 Connect = %v, %v; want shim pid %d, task pid 100", v2, err, os.Getpid())
	}
	v3 := taskv3.NewTTRPCTaskClient(client)
	conn, err := v3.Connect(ctx, &taskv3.ConnectRequest{ID: "c"})
	if err != nil || conn.ShimPid != uint32(os.Getpid()) || conn.TaskPid != 100 {
		t.Errorf("v3 Connect = %v, %v; want shim pid %d, task pid 100", conn, err, os.Getpid())
	}
	state, err := v3.State(ctx, &taskv3.StateRequest{ID: "c"})
	if err != nil || state.Status != task.Status_RUNNING || state.Pid != 100 || state.ID != "c" {
		t.Errorf("v3 State = %v, %v; want c running as pid 100", state, err)
	}
	if _, err := v3.State(ctx, &taskv3.StateRequest{ID: "nope"}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Errorf("v3 State of an unknown task: %v, want NotFound", err)
	}
	if _, err := v3.Checkpoint(ctx, &taskv3.CheckpointTaskRequest{ID: "c"}); !errdefs.IsNotImplemented(errgrpc.ToNative(err)) {
		t.Errorf("v3 Checkpoint: %v, want NotImplemented", err)
	}
	if _, err := v3.Shutdown(ctx, &taskv3.ShutdownRequest{ID: "c"}); err != nil {
		t.Errorf("v3 Shutdown with a task left: %v", err)
	}
}

// Serving v3 with the v2 messages is right only while the two APIs have
// the same methods with the same messages, field for field.
func TestTaskAPIv3IsV2(t *testing.T) {
	v2 := taskv2.File_github_com_containerd_containerd_api_runtime_task_v2_shim_proto.Services().ByName("Task")
	v3 := taskv3.File_github_com_containerd_containerd_api_runtime_task_v3_shim_proto.Services().ByName("Task")
	s, _, _ := testService(t)
	served := slices.Sorted(maps.Keys(s.methods()))
	for _, svc := range []protoreflect.ServiceDescriptor{v2, v3} {
		var names []string
		for i := range svc.Methods().Len() {
			names = append(names, string(svc.Methods().Get(i).Name()))
		}
		if slices.Sort(names); !slices.Equal(names, served) {
			t.Errorf("%s has methods %v, the shim serves %v", svc.FullName(), names, served)
		}
	}
	for i := range v3.Methods().Len() {
		m3 := v3.Methods().Get(i)
		m2 := v2.Methods().ByName(m3.Name())
		sameMessage(t, m2.Input(), m3.Input())
		sameMessage(t, m2.Output(), m3.Output())
	}
}

// sameMessage compares two messages field by field, following the
// messages of their own packages, which differ in name only.
func sameMessage(t *testing.T, a, b protoreflect.MessageDescriptor) {
	t.Helper()
	if local(a) != local(b) || a.Fields().Len() != b.Fields().Len() {
		t.Errorf("%s and %s differ", a.FullName(), b.FullName())
		return
	}
	for i := range a.Fields().Len() {
		fa, fb := a.Fields().Get(i), b.Fields().Get(i)
		if fa.Number() != fb.Number() || fa.Name() != fb.Name() || fa.Kind() != fb.Kind() || fa.Cardinality() != fb.Cardinality() || fa.IsPacked() != fb.IsPacked() {
			t.Errorf("%s.%s and %s.%s differ", a.FullName(), fa.Name(), b.FullName(), fb.Name())
			continue
		}
		if fa.Enum() != nil && fa.Enum().FullName() != fb.Enum().FullName() {
			t.Errorf("%s.%s is a %s, %s.%s a %s", a.FullName(), fa.Name(), fa.Enum().FullName(), b.FullName(), fb.Name(), fb.Enum().FullName())
		}
		if fa.Message() != nil {
			if fa.Message().ParentFile() == a.ParentFile() {
				sameMessage(t, fa.Message(), fb.Message())
			} else if fa.Message().FullName() != fb.Message().FullName() {
				t.Errorf("%s.%s is a %s, %s.%s a %s", a.FullName(), fa.Name(), fa.Message().FullName(), b.FullName(), fb.Name(), fb.Message().FullName())
			}
		}
	}
}

// local is a message's name without its package, for messages of the
// task API's own file.
func local(m protoreflect.MessageDescriptor) string {
	pkg := string(m.ParentFile().Package())
	return strings.TrimPrefix(string(m.FullName()), pkg+".")
}
