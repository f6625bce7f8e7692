package gc

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestTricolor(t *testing.T) {
	n := func(k string) Node { return Node{Type: ResourceContent, Namespace: "ns", Key: k} }
	graph := map[Node][]Node{
		n("a"): {n("b"), n("c")},
		n("b"): {n("c"), n("a")}, // cycle
		n("d"): {n("e")},         // unreachable
	}
	got, err := Tricolor([]Node{n("a")}, func(x Node) ([]Node, error) { return graph[x], nil })
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b", "c"} {
		if _, ok := got[n(k)]; !ok {
			t.Errorf("node %s not reached", k)
		}
	}
	for _, k := range []string{"d", "e"} {
		if _, ok := got[n(k)]; ok {
			t.Errorf("node %s reached but unreachable from the roots", k)
		}
	}
}

func TestTricolorError(t *testing.T) {
	boom := errors.New("boom")
	root := Node{Type: ResourceContent, Namespace: "ns", Key: "sha256:abc"}
	_, err := Tricolor([]Node{root}, func(Node) ([]Node, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want it to wrap %v", err, boom)
	}
	for _, want := range []string{"content", `"sha256:abc"`, `"ns"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestTricolorNamespacesAndTypesDistinct(t *testing.T) {
	a := Node{Type: ResourceContent, Namespace: "a", Key: "k"}
	b := Node{Type: ResourceContent, Namespace: "b", Key: "k"}
	ingest := Node{Type: ResourceIngest, Namespace: "a", Key: "k"}
	got, err := Tricolor([]Node{a, a}, func(n Node) ([]Node, error) {
		if n == a {
			return []Node{a}, nil // self reference
		}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[Node]struct{}{a: {}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("reached %v, want only %v (not %v or %v)", got, a, b, ingest)
	}
	if got, _ := Tricolor(nil, nil); len(got) != 0 {
		t.Errorf("Tricolor without roots reached %v", got)
	}
}

func TestResourceTypeString(t *testing.T) {
	for typ, want := range map[ResourceType]string{
		ResourceContent: "content", ResourceIngest: "ingest", ResourceSnapshot: "snapshot",
		ResourceImage: "image", ResourceLease: "lease", 0: "resource(0)", 42: "resource(42)",
	} {
		if got := typ.String(); got != want {
			t.Errorf("ResourceType(%d).String() = %q, want %q", uint8(typ), got, want)
		}
	}
}
