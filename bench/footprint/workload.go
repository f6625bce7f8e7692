package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	introspectionapi "github.com/containerd/containerd/api/services/introspection/v1"
	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// namespaceHeader is the gRPC metadata key both daemons read the request's
// namespace from.
const namespaceHeader = "containerd-namespace"

// blobSize is the size of each blob the workload ingests.
const blobSize = 4 << 10

// client talks to one daemon through containerd's v1 API.
type client struct {
	conn    *grpc.ClientConn
	content contentapi.ContentClient
	ns      namespacesapi.NamespacesClient
}

func dial(socket string) (*client, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return &client{conn: conn, content: contentapi.NewContentClient(conn), ns: namespacesapi.NewNamespacesClient(conn)}, nil
}

func (c *client) Close() error { return c.conn.Close() }

// version checks that the daemon answers a call.
func (c *client) version(ctx context.Context) error {
	_, err := versionapi.NewVersionClient(c.conn).Version(ctx, &emptypb.Empty{})
	return err
}

// plugins lists the daemon's plugins as type.id URIs, loaded and failed
// (containerd reports the snapshotters this machine cannot run as failed).
func (c *client) plugins(ctx context.Context) (loaded, failed []string, err error) {
	resp, err := introspectionapi.NewIntrospectionClient(c.conn).Plugins(ctx, &introspectionapi.PluginsRequest{})
	if err != nil {
		return nil, nil, err
	}
	for _, p := range resp.Plugins {
		uri := p.Type + "." + p.ID
		if p.InitErr == nil {
			loaded = append(loaded, uri)
		} else {
			failed = append(failed, uri)
		}
	}
	return loaded, failed, nil
}

// step is one operation of the workload's cycle on namespace ns with the
// cycle's blob.
type step struct {
	name string
	run  func(ctx context.Context, c *client, ns string, blob []byte) error
}

// cycle is the workload's repeating sequence: it creates a namespace, ingests
// a blob into it, reads, labels and lists both, then deletes them, leaving
// the daemon as it found it. Each step is one operation. Every call carries
// the namespace header, the namespace calls too: containerd 1.6 publishes
// their events in the request's namespace and fails without one.
var cycle = []step{
	{"namespaces.Create", func(ctx context.Context, c *client, ns string, _ []byte) error {
		_, err := c.ns.Create(ctx, &namespacesapi.CreateNamespaceRequest{
			Namespace: &namespacesapi.Namespace{Name: ns, Labels: map[string]string{"bench": "footprint"}}})
		return err
	}},
	{"content.Write", func(ctx context.Context, c *client, ns string, blob []byte) error {
		return writeBlob(ctx, c, "footprint-"+ns, blob)
	}},
	{"content.Info", func(ctx context.Context, c *client, ns string, blob []byte) error {
		_, err := c.content.Info(ctx, &contentapi.InfoRequest{Digest: digestOf(blob)})
		return err
	}},
	{"content.Update", func(ctx context.Context, c *client, ns string, blob []byte) error {
		_, err := c.content.Update(ctx, &contentapi.UpdateRequest{
			Info:       &contentapi.Info{Digest: digestOf(blob), Labels: map[string]string{"bench/step": "labelled"}},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels.bench/step"}}})
		return err
	}},
	{"content.List", func(ctx context.Context, c *client, ns string, _ []byte) error {
		return drain(c.content.List(ctx, &contentapi.ListContentRequest{}))
	}},
	{"namespaces.Get", func(ctx context.Context, c *client, ns string, _ []byte) error {
		_, err := c.ns.Get(ctx, &namespacesapi.GetNamespaceRequest{Name: ns})
		return err
	}},
	{"namespaces.Update", func(ctx context.Context, c *client, ns string, _ []byte) error {
		_, err := c.ns.Update(ctx, &namespacesapi.UpdateNamespaceRequest{
			Namespace:  &namespacesapi.Namespace{Name: ns, Labels: map[string]string{"bench/step": "labelled"}},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels.bench/step"}}})
		return err
	}},
	{"namespaces.List", func(ctx context.Context, c *client, _ string, _ []byte) error {
		_, err := c.ns.List(ctx, &namespacesapi.ListNamespacesRequest{})
		return err
	}},
	{"content.Delete", func(ctx context.Context, c *client, ns string, blob []byte) error {
		_, err := c.content.Delete(ctx, &contentapi.DeleteContentRequest{Digest: digestOf(blob)})
		return err
	}},
	{"namespaces.Delete", func(ctx context.Context, c *client, ns string, _ []byte) error {
		_, err := c.ns.Delete(ctx, &namespacesapi.DeleteNamespaceRequest{Name: ns})
		return err
	}},
}

// runOps runs exactly n operations, cycling through cycle with a fresh
// namespace and blob each turn; a last partial cycle leaves its namespace.
func runOps(ctx context.Context, c *client, n int) error {
	var blob []byte
	var ns string
	for i := range n {
		k := i % len(cycle)
		if k == 0 {
			ns = fmt.Sprintf("footprint-%d", i/len(cycle))
			blob = makeBlob(i / len(cycle))
		}
		if err := cycle[k].run(withNS(ctx, ns), c, ns, blob); err != nil {
			return fmt.Errorf("operation %d (%s in namespace %q): %w", i, cycle[k].name, ns, err)
		}
	}
	return nil
}

// writeBlob ingests blob under ref with the STAT/WRITE/COMMIT sequence a
// containerd client uses. The gc.root label keeps the unleased blob from
// the garbage collector until the workload deletes it.
func writeBlob(ctx context.Context, c *client, ref string, blob []byte) error {
	stream, err := c.content.Write(ctx)
	if err != nil {
		return err
	}
	reqs := []*contentapi.WriteContentRequest{
		{Action: contentapi.WriteAction_STAT, Ref: ref},
		{Action: contentapi.WriteAction_WRITE, Ref: ref, Offset: 0, Data: blob},
		{Action: contentapi.WriteAction_COMMIT, Ref: ref, Offset: int64(len(blob)), Total: int64(len(blob)), Expected: digestOf(blob),
			Labels: map[string]string{"containerd.io/gc.root": "footprint"}},
	}
	for _, req := range reqs {
		if err := stream.Send(req); err != nil {
			return fmt.Errorf("send %s: %w", req.Action, err)
		}
		if _, err := stream.Recv(); err != nil {
			return fmt.Errorf("%s: %w", req.Action, err)
		}
	}
	return stream.CloseSend()
}

// drain reads a List stream to its end.
func drain(stream contentapi.Content_ListClient, err error) error {
	if err != nil {
		return err
	}
	for {
		if _, err := stream.Recv(); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

func withNS(ctx context.Context, ns string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, namespaceHeader, ns)
}

// makeBlob returns blobSize bytes unique to i, so every cycle writes new
// content.
func makeBlob(i int) []byte {
	b := make([]byte, blobSize)
	for j := range b {
		b[j] = byte(i + j*31)
	}
	copy(b, fmt.Sprintf("footprint blob %d\n", i))
	return b
}

func digestOf(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }
