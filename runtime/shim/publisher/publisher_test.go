package publisher

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/emptypb"
)

type sink struct {
	mu     sync.Mutex
	topics []string
	ns     []string
	ids    []string
}

func (s *sink) Forward(ctx context.Context, req *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	ns, _ := ttrpc.GetMetadataValue(ctx, TTRPCNamespaceHeader)
	v, err := typeurl.UnmarshalAny(req.Envelope.Event)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.topics = append(s.topics, req.Envelope.Topic)
	s.ns = append(s.ns, ns+"/"+req.Envelope.Namespace)
	s.ids = append(s.ids, v.(*eventstypes.TaskExit).ID)
	return &emptypb.Empty{}, nil
}

func serve(t *testing.T, path string) *sink {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{}
	eventsapi.RegisterEventsService(srv, s)
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })
	return s
}

func socketPath(t *testing.T) string {
	dir, err := os.MkdirTemp("", "bpub")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "d.sock")
}

// Events arrive in order, with the namespace in the envelope and the ttrpc
// header, even when the daemon appears only after they were published.
func TestPublishInOrderAcrossDaemonAbsence(t *testing.T) {
	path := socketPath(t)
	var failures int
	var mu sync.Mutex
	p := New("unix://"+path, "k8s.io", func(string, error) { mu.Lock(); failures++; mu.Unlock() })
	for _, id := range []string{"a", "b", "c"} {
		if err := p.Publish("/tasks/exit", &eventstypes.TaskExit{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond) // at least one failed attempt
	s := serve(t, path)
	p.Close(10 * time.Second)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ids) != 3 || s.ids[0] != "a" || s.ids[1] != "b" || s.ids[2] != "c" {
		t.Errorf("events = %v, want a, b, c", s.ids)
	}
	for _, ns := range s.ns {
		if ns != "k8s.io/k8s.io" {
			t.Errorf("namespace header/envelope = %s", ns)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if failures == 0 {
		t.Error("no failed attempt while the daemon was absent")
	}
	if err := p.Publish("/tasks/exit", &eventstypes.TaskExit{}); err == nil {
		t.Error("Publish after Close succeeded")
	}
}

func TestNoAddressDiscards(t *testing.T) {
	p := New("", "default", nil)
	if err := p.Publish("/tasks/exit", &eventstypes.TaskExit{}); err != nil {
		t.Fatal(err)
	}
	p.Close(time.Second)
}
