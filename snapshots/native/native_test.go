package native

import (
	"context"
	"testing"

	"github.com/berth-dev/berth/snapshots"
	"github.com/berth-dev/berth/snapshots/testsuite"
)

func TestSuite(t *testing.T) {
	testsuite.SnapshotterSuite(t, "native", func(_ context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		s, err := NewSnapshotter(root)
		if err != nil {
			return nil, nil, err
		}
		return s, s.Close, nil
	})
}
