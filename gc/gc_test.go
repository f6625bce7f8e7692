package gc

import "testing"

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
