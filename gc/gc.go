// Package gc is berth's garbage collection: a tricolor mark over a graph of
// resources (Tricolor), and a Scheduler that decides when the collector
// runs — after deletions, at start-up, on a timer, or right away when a
// client asks for a synchronous delete.
package gc

import "fmt"

// ResourceType is the kind of a node.
type ResourceType uint8

// Resource types.
const (
	ResourceContent ResourceType = iota + 1
	ResourceIngest
	ResourceSnapshot
	ResourceImage
	ResourceLease
)

func (t ResourceType) String() string {
	switch t {
	case ResourceContent:
		return "content"
	case ResourceIngest:
		return "ingest"
	case ResourceSnapshot:
		return "snapshot"
	case ResourceImage:
		return "image"
	case ResourceLease:
		return "lease"
	}
	return fmt.Sprintf("resource(%d)", uint8(t))
}

// Node is one resource in one namespace. Key is a digest, ref or
// "snapshotter/key".
type Node struct {
	Type      ResourceType
	Namespace string
	Key       string
}

// Tricolor returns every node reachable from roots through refs.
func Tricolor(roots []Node, refs func(Node) ([]Node, error)) (map[Node]struct{}, error) {
	reached := make(map[Node]struct{}, len(roots))
	grey := append([]Node(nil), roots...)
	for len(grey) > 0 {
		n := grey[len(grey)-1]
		grey = grey[:len(grey)-1]
		if _, seen := reached[n]; seen {
			continue
		}
		reached[n] = struct{}{}
		children, err := refs(n)
		if err != nil {
			return nil, fmt.Errorf("gc: references of %s %q in namespace %q: %w", n.Type, n.Key, n.Namespace, err)
		}
		for _, c := range children {
			if _, seen := reached[c]; !seen {
				grey = append(grey, c)
			}
		}
	}
	return reached, nil
}
