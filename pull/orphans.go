package pull

import (
	"context"
	"errors"
	"fmt"

	"github.com/berth-dev/berth/log"
	"github.com/berth-dev/berth/namespaces"
)

// LeaseLabel marks the leases a Puller takes for its pulls and downloads.
// Such a lease lives only as long as the pull in the daemon's memory: one
// found when a daemon starts on its root was left by a daemon that died
// mid-pull, and holds half-written ingests and half-unpacked snapshots
// that nobody will finish.
const LeaseLabel = "berth.dev/pull"

// ReleaseOrphans deletes the pull leases in the namespaces nss, for the
// garbage collector to take what they held. The daemon calls it at start,
// before it serves: no pull of its own can be running. It returns how
// many leases it released.
func (p *Puller) ReleaseOrphans(ctx context.Context, nss []string) (int, error) {
	var errs []error
	n := 0
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(ctx, ns)
		ls, err := p.stores.Leases.List(nctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("leases of namespace %s: %w", ns, err))
			continue
		}
		for _, l := range ls {
			if _, ok := l.Labels[LeaseLabel]; !ok {
				continue
			}
			if err := p.stores.Leases.Delete(nctx, l.ID, false); err != nil {
				errs = append(errs, fmt.Errorf("release lease %s of namespace %s: %w", l.ID, ns, err))
				continue
			}
			log.G(ctx).Info("released the lease of a pull interrupted by a previous berthd", "namespace", ns, "lease", l.ID)
			n++
		}
	}
	return n, errors.Join(errs...)
}
