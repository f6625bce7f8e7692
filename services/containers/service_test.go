package containers_test

import (
	"context"

	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/content/local"
	"github.com/berth-dev/berth/metadata"
	"github.com/berth-dev/berth/namespaces"
	containerssvc "github.com/berth-dev/berth/services/containers"
	api "github.com/containerd/containerd/api/services/containers/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcmd "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// specJSON is what ctr sends as a spec: the runtime spec as JSON under the
// spec type URL. The service must give back exactly these bytes.
const specJSON = `{"ociVersion":"1.0.2-dev","process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"}}`

// serve starts the service over a fresh metadata database on a unix
// socket, behind the daemon's conventions (namespace from the
// containerd-namespace header, errors mapped to gRPC codes once), and
// returns a client of it.
func serve(t *testing.T) api.ContainersClient {
	t.Helper()
	dir := t.TempDir()
	cs, err := local.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := metadata.Open(filepath.Join(dir, "meta.db"), cs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })

	inNamespace := func(ctx context.Context) context.Context {
		md, _ := grpcmd.FromIncomingContext(ctx)
		ns := namespaces.Default
		if v := md.Get(namespaces.GRPCHeader); len(v) > 0 {
			ns = v[0]
		}
		return namespaces.WithNamespace(ctx, ns)
	}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(inNamespace(ctx), req)
			return resp, errgrpc.ToGRPC(err)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return errgrpc.ToGRPC(h(srv, &nsStream{ServerStream: ss, ctx: inNamespace(ss.Context())}))
		}),
	)
	containerssvc.New(db.Containers()).Register(srv)
	sock := filepath.Join(dir, "berth.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return api.NewContainersClient(conn)
}

type nsStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *nsStream) Context() context.Context { return s.ctx }

func nsCtx(ns string) context.Context {
	return grpcmd.AppendToOutgoingContext(context.Background(), namespaces.GRPCHeader, ns)
}

func container(id string) *api.Container {
	return &api.Container{
		ID:     id,
		Labels: map[string]string{"app": id},
		Image:  "docker.io/library/busybox:latest",
		Runtime: &api.Container_Runtime{
			Name:    "io.containerd.runc.v2",
			Options: &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: []byte{0x0a, 0x04, 'r', 'u', 'n', 'c'}},
		},
		Spec:        &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: []byte(specJSON)},
		Snapshotter: "overlayfs",
		SnapshotKey: id,
		Extensions:  map[string]*anypb.Any{"example.com/ext": {TypeUrl: "example.com/Ext", Value: []byte("opaque")}},
		Sandbox:     "pod-1",
	}
}

// withoutTimes compares containers but for their timestamps.
var withoutTimes = protocmp.IgnoreFields(&api.Container{}, "created_at", "updated_at")

func wantCode(t *testing.T, err error, code codes.Code, parts ...string) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("error %v: code %v, want %v", err, got, code)
	}
	for _, p := range parts {
		if !strings.Contains(status.Convert(err).Message(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

func TestServiceCreateGet(t *testing.T) {
	c := serve(t)
	ctx := nsCtx("default")
	in := container("web")
	created, err := c.Create(ctx, &api.CreateContainerRequest{Container: in})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(in, created.Container, protocmp.Transform(), withoutTimes); d != "" {
		t.Errorf("Create returned (-want +got):\n%s", d)
	}
	if created.Container.CreatedAt.AsTime().IsZero() {
		t.Error("Create returned no created_at")
	}
	got, err := c.Get(ctx, &api.GetContainerRequest{ID: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(created.Container, got.Container, protocmp.Transform()); d != "" {
		t.Errorf("Get (-want +got):\n%s", d)
	}
	if string(got.Container.Spec.Value) != specJSON {
		t.Errorf("spec bytes = %q, want them unchanged", got.Container.Spec.Value)
	}

	_, err = c.Create(ctx, &api.CreateContainerRequest{Container: in})
	wantCode(t, err, codes.AlreadyExists, `container "web"`)
	_, err = c.Get(nsCtx("k8s.io"), &api.GetContainerRequest{ID: "web"})
	wantCode(t, err, codes.NotFound, `it exists in namespace "default"`)
	if !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Errorf("error %v does not map back to NotFound", err)
	}
}

func TestServiceCreateInvalid(t *testing.T) {
	c := serve(t)
	ctx := nsCtx("default")
	noSpec := container("x")
	noSpec.Spec = nil
	noRuntime := container("x")
	noRuntime.Runtime = nil
	badID := container("x/y")
	for name, req := range map[string]*api.CreateContainerRequest{
		"no container": {},
		"no spec":      {Container: noSpec},
		"no runtime":   {Container: noRuntime},
		"bad id":       {Container: badID},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.Create(ctx, req)
			wantCode(t, err, codes.InvalidArgument)
		})
	}
	_, err := c.Create(ctx, &api.CreateContainerRequest{Container: badID})
	wantCode(t, err, codes.InvalidArgument, `identifier "x/y" must match`)
	_, err = c.Create(ctx, &api.CreateContainerRequest{Container: noSpec})
	wantCode(t, err, codes.InvalidArgument, "spec must be set")
}

func TestServiceListAndStream(t *testing.T) {
	c := serve(t)
	ctx := nsCtx("default")
	var want []string
	for i := range 150 {
		id := "c-" + string(rune('a'+i/26)) + string(rune('a'+i%26))
		want = append(want, id)
		in := container(id)
		if i%2 == 1 {
			in.Runtime.Name = "io.containerd.runsc.v1"
		}
		if _, err := c.Create(ctx, &api.CreateContainerRequest{Container: in}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Create(nsCtx("other"), &api.CreateContainerRequest{Container: container("elsewhere")}); err != nil {
		t.Fatal(err)
	}

	list, err := c.List(ctx, &api.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(list.Containers); !slices.Equal(got, want) {
		t.Errorf("List = %d containers %v..., want %d", len(got), head(got), len(want))
	}
	streamed := listStream(t, ctx, c)
	if got := ids(streamed); !slices.Equal(got, want) {
		t.Errorf("ListStream = %d containers %v..., want %d", len(got), head(got), len(want))
	}
	if d := cmp.Diff(list.Containers, streamed, protocmp.Transform()); d != "" {
		t.Errorf("ListStream differs from List (-List +ListStream):\n%s", d)
	}

	filtered := listStream(t, ctx, c, "runtime.name==io.containerd.runsc.v1", "id==c-aa")
	if len(filtered) != 76 {
		t.Errorf("filtered ListStream = %d containers, want 75 runsc ones and c-aa", len(filtered))
	}
	stream, err := c.ListStream(ctx, &api.ListContainersRequest{Filters: []string{"id=="}})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.InvalidArgument, "filters")
}

func TestServiceUpdate(t *testing.T) {
	c := serve(t)
	ctx := nsCtx("default")
	if _, err := c.Create(ctx, &api.CreateContainerRequest{Container: container("web")}); err != nil {
		t.Fatal(err)
	}
	// ctr containers label web tier=front: labels.KEY only.
	upd := &api.Container{ID: "web", Labels: map[string]string{"tier": "front", "app": "ignored"}}
	resp, err := c.Update(ctx, &api.UpdateContainerRequest{Container: upd, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels.tier"}}})
	if err != nil {
		t.Fatal(err)
	}
	want := container("web")
	want.Labels["tier"] = "front"
	if d := cmp.Diff(want, resp.Container, protocmp.Transform(), withoutTimes); d != "" {
		t.Errorf("Update labels.tier (-want +got):\n%s", d)
	}

	// A new spec replaces the old one byte for byte.
	newSpec := &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: []byte(`{"ociVersion":"1.1.0"}`)}
	resp, err = c.Update(ctx, &api.UpdateContainerRequest{Container: &api.Container{ID: "web", Spec: newSpec},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"spec"}}})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(newSpec, resp.Container.Spec, protocmp.Transform()); d != "" {
		t.Errorf("spec after update (-want +got):\n%s", d)
	}

	_, err = c.Update(ctx, &api.UpdateContainerRequest{Container: container("web"), UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"runtime"}}})
	wantCode(t, err, codes.InvalidArgument, `cannot update "runtime" field`)
	other := container("web")
	other.Snapshotter = "native"
	_, err = c.Update(ctx, &api.UpdateContainerRequest{Container: other})
	wantCode(t, err, codes.InvalidArgument, "container.Snapshotter field is immutable")
	_, err = c.Update(ctx, &api.UpdateContainerRequest{Container: &api.Container{}})
	wantCode(t, err, codes.InvalidArgument, "ID is required")
	_, err = c.Update(ctx, &api.UpdateContainerRequest{})
	wantCode(t, err, codes.InvalidArgument, "ID is required")
	_, err = c.Update(ctx, &api.UpdateContainerRequest{Container: container("nope"), UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels"}}})
	wantCode(t, err, codes.NotFound, `container "nope"`)
}

func TestServiceDelete(t *testing.T) {
	c := serve(t)
	ctx := nsCtx("default")
	if _, err := c.Create(ctx, &api.CreateContainerRequest{Container: container("web")}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Delete(nsCtx("k8s.io"), &api.DeleteContainerRequest{ID: "web"})
	wantCode(t, err, codes.NotFound, `it exists in namespace "default"`)
	if _, err := c.Delete(ctx, &api.DeleteContainerRequest{ID: "web"}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(ctx, &api.GetContainerRequest{ID: "web"})
	wantCode(t, err, codes.NotFound)
	_, err = c.Delete(ctx, &api.DeleteContainerRequest{ID: "web"})
	wantCode(t, err, codes.NotFound)
}

func listStream(t *testing.T, ctx context.Context, c api.ContainersClient, filters ...string) []*api.Container {
	t.Helper()
	stream, err := c.ListStream(ctx, &api.ListContainersRequest{Filters: filters})
	if err != nil {
		t.Fatal(err)
	}
	var out []*api.Container
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("ListStream(%q): %v", filters, err)
		}
		out = append(out, m.Container)
	}
}

func ids(cs []*api.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

func head(s []string) []string { return s[:min(len(s), 3)] }
