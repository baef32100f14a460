package reconciler

import (
	"context"

	"github.com/drover-dev/drover/sources"
)

// Rollouts reads how far each service is from rev, changing nothing: FleetStatus's
// services, against a revision the caller read itself (`drover run --once` and
// `drover plan` show it on a terminal a few times a second while passes run). It is
// level-based like a pass, reading the hypervisor and Consul each time, and runs no
// pass hook, so polling it never looks like a pass to fault injection.
func (r *Reconciler) Rollouts(ctx context.Context, rev sources.Revision) ([]ServiceStatus, error) {
	st, err := r.fleetStatus(ctx, statusInput{rev: &rev})
	return st.Services, err
}
