package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// fakeNamespaces knows the namespace "default" and records the namespace
// header of each call.
type fakeNamespaces struct {
	namespacesapi.UnimplementedNamespacesServer
	mu      sync.Mutex
	headers []string
}

func (f *fakeNamespaces) Delete(ctx context.Context, req *namespacesapi.DeleteNamespaceRequest) (*emptypb.Empty, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.headers = append(f.headers, md.Get(namespaceHeader)...)
	f.mu.Unlock()
	if req.GetName() != "default" {
		return nil, status.Errorf(codes.NotFound, "namespace %q: not found", req.GetName())
	}
	return &emptypb.Empty{}, nil
}

// serveFake serves the namespaces service on a unix socket until the test ends.
func serveFake(t *testing.T, ns namespacesapi.NamespacesServer) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "fake.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	namespacesapi.RegisterNamespacesServer(srv, ns)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return sock
}

func TestCallsCarryNamespaceAndNativeErrors(t *testing.T) {
	fake := &fakeNamespaces{}
	sock := serveFake(t, fake)
	var stdout, stderr bytes.Buffer
	env := map[string]string{"BERTH_ADDRESS": sock, "BERTH_NAMESPACE": "k8s.io"}
	code := execute(context.Background(), []string{"ns", "rm", "gone", "default", "also-gone"},
		nil, &stdout, &stderr, func(k string) string { return env[k] })

	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if stdout.String() != "default\n" {
		t.Errorf("stdout %q, want the one removed name", stdout.String())
	}
	wantErr := "berth: namespace \"gone\": not found\nberth: namespace \"also-gone\": not found\n"
	if stderr.String() != wantErr {
		t.Errorf("stderr %q, want %q", stderr.String(), wantErr)
	}
	if want := []string{"k8s.io", "k8s.io", "k8s.io"}; !slices.Equal(fake.headers, want) {
		t.Errorf("namespace headers %q, want %q", fake.headers, want)
	}
}

func TestUnimplementedServiceIsReported(t *testing.T) {
	sock := serveFake(t, &fakeNamespaces{})
	var stdout, stderr bytes.Buffer
	code := execute(context.Background(), []string{"--address", sock, "images", "ls"},
		nil, &stdout, &stderr, func(string) string { return "" })
	want := "berth: unknown service containerd.services.images.v1.Images (not implemented by the daemon at " +
		sock + ")\n"
	if code != 1 || stderr.String() != want {
		t.Errorf("exit %d, stderr %q; want 1, %q", code, stderr.String(), want)
	}
}

func TestRemoveListsRemovedNamesAsJSON(t *testing.T) {
	sock := serveFake(t, &fakeNamespaces{})
	var stdout, stderr bytes.Buffer
	code := execute(context.Background(), []string{"--address", sock, "--format", "json", "ns", "rm", "gone", "default"},
		nil, &stdout, &stderr, func(string) string { return "" })
	var removed []string
	if err := json.Unmarshal(stdout.Bytes(), &removed); err != nil || !slices.Equal(removed, []string{"default"}) {
		t.Errorf("stdout %q (%v), want a JSON list of the removed name", stdout.String(), err)
	}
	if code != 1 || stderr.String() != "berth: namespace \"gone\": not found\n" {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}
