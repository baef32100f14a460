package reconciler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/drover-dev/drover/sources"
)

// Pass reads the world, diffs it against rev, acts, and waits for what it started, for
// callers that want the whole outcome of one pass (tests, benchmarks). It refuses a
// commit over the host budget. The Runner uses Start.
func (r *Reconciler) Pass(ctx context.Context, rev sources.Revision) (Result, error) {
	res, err := r.Start(ctx, rev)
	if err != nil {
		return res, err
	}
	r.Wait()
	res.InProgress = nil
	res.Err = errors.Join(res.Err, r.work.takeOutcomes())
	return res, nil
}

// Start reads the world, diffs it against rev and acts without waiting: the rollout of
// each service that needs one runs in the background, so a long drain or health gate of
// one service does not hold back a newer commit's changes to the others. A service whose
// rollout is still running is left alone (reported in progress) and planned again by the
// next pass from whatever then exists. Start reports the errors of background rollouts
// that ended since the previous call. A commit over the host budget is refused
// (*BudgetError) before anything is read or done.
func (r *Reconciler) Start(ctx context.Context, rev sources.Revision) (Result, error) {
	if err := r.Admit(rev); err != nil {
		return Result{}, err
	}
	// Taken before observing: a service busy at any instant of the observation may have
	// VMs or registrations the snapshot caught half-made.
	busy := r.work.busy()
	r.sweep(ctx)
	r.collectReservations(ctx, r.log)
	p, obs, err := r.plan(ctx, rev)
	if err != nil {
		return Result{}, err
	}
	p.inProgress(busy)
	res := Result{Plan: p}
	log := r.log.With("revision", shortRev(rev.Commit))
	errs := []error{r.work.takeOutcomes()}

	for _, sp := range p.Services {
		for _, vm := range sp.IOError {
			log.Warn("vm paused by an I/O error (disk full?): kept for inspection, not serving, not replaced in a loop; destroy it by hand",
				"service", sp.Service, "vm", vm.Name, "event", "ioerror")
		}
		switch {
		case sp.InProgress:
			continue
		case sp.Noop():
			if sp.Held != "" {
				errs = append(errs, &HeldError{Service: sp.Service, Reason: sp.Held})
			}
			continue
		}
		svc, _ := p.fleet.Service(sp.Service)
		if sp.Create > 0 && !sp.Prune {
			// Refused before anything of this service changes, every pass, until the
			// foreign instances are gone or the fleet file opts in.
			if err := r.checkServiceOwner(ctx, svc); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		svcLog := log.With("service", sp.Service)
		if r.work.start(sp.Service, func() error { return r.execute(ctx, svcLog, rev.Commit, svc, sp) }) {
			res.Changed = true
		}
	}
	if r.cfg.Chaos {
		if r.chaos(ctx, log, p) {
			res.Changed = true
		}
	}
	instService := map[string]string{}
	for _, in := range obs.Instances {
		instService[in.ID] = in.Service
	}
	for _, id := range p.Orphans {
		if busy[instService[id]] {
			// A rollout of that service may have registered it after the VM list was read.
			continue
		}
		err := r.finish(ctx, func(ctx context.Context) error { return r.cfg.Registrar.Deregister(ctx, id) })
		if err != nil {
			errs = append(errs, fmt.Errorf("deregister orphan %s: %w", id, err))
			continue
		}
		res.Changed = true
		r.cfg.Hook(PointOrphanDeregistered)
		log.Info("deregistered instance whose VM is gone", "vm", id)
	}
	res.InProgress = slices.Sorted(maps.Keys(r.work.busy()))
	res.Err = errors.Join(errs...)
	if !res.Changed && res.Err == nil && len(res.InProgress) == 0 && len(busy) == 0 {
		r.collectImages(ctx, log, rev, obs)
	}
	return res, nil
}

// Wait blocks until every background rollout has ended. Cancelling the context given
// to Start makes them end at their next step.
func (r *Reconciler) Wait() { r.work.wait() }

// Finished receives when a background rollout ends, so the runner passes again at once.
func (r *Reconciler) Finished() <-chan struct{} { return r.work.finished }
