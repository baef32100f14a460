package reconciler

import (
	"context"
	"fmt"
)

// Operator is what operators look through and steer with: the HTTP API, the dashboard,
// metrics, notifications and the CLI hold it as a View and a Control. cmd builds it
// from the process's Reconciler and Runner, and its Leader when there is a lock.
type Operator struct {
	Reconciler *Reconciler
	// Runner, optional, gives the desired revision and runs Reconcile; without it
	// (a CLI reading Consul directly) FleetStatus shows only what runs.
	Runner *Runner
	// Leader, optional: without one, this process acts alone and leads.
	Leader *Leader
	// offline is Consul's instance list when the Operator is NewOffline's: no
	// hypervisor, no loop, only what Consul keeps.
	offline InstanceLister
}

var (
	_ View    = (*Operator)(nil)
	_ Control = (*Operator)(nil)
)

// FleetStatus is the fleet as of now: the last good revision against the VMs and
// their Consul instances.
func (o *Operator) FleetStatus(ctx context.Context) (FleetStatus, error) {
	if o.offline != nil {
		return o.offlineStatus(ctx)
	}
	if o.Reconciler.cfg.Hypervisor == nil {
		return FleetStatus{}, fmt.Errorf("fleet status: %w", ErrNotRunning)
	}
	var in statusInput
	if o.Runner != nil {
		rev, fetched, ok := o.Runner.Desired()
		if ok {
			in.rev = &rev
		}
		st := o.Runner.Status()
		in.lastFetch, in.lastPass, in.err = fetched, st.LastPass, st.Error
	}
	in.leader = o.Leader == nil || o.Leader.Leading()
	return o.Reconciler.fleetStatus(ctx, in)
}

// History is the fleet's stored events, oldest first.
func (o *Operator) History(ctx context.Context, service string, limit int) ([]Event, error) {
	return o.Reconciler.History(ctx, service, limit)
}

// Subscribe follows the events live.
func (o *Operator) Subscribe() (<-chan Event, func()) { return o.Reconciler.Subscribe() }

// Suspend leaves a service as it is until Resume; it must be in the fleet or have VMs.
func (o *Operator) Suspend(ctx context.Context, service, reason string) error {
	if err := o.known(ctx, service); err != nil {
		return fmt.Errorf("suspend %s: %w", service, err)
	}
	return o.stored(ctx, o.Reconciler.Suspend(ctx, service, reason))
}

// Resume lets passes act on a suspended service again, starting one at once.
func (o *Operator) Resume(ctx context.Context, service string) error {
	if err := o.Reconciler.Resume(ctx, service); err != nil {
		return err
	}
	o.wake()
	return o.stored(ctx, nil)
}

// Retry releases a held revision, starting a pass at once.
func (o *Operator) Retry(ctx context.Context, service string) error {
	if err := o.Reconciler.Retry(ctx, service); err != nil {
		return err
	}
	o.wake()
	return o.stored(ctx, nil)
}

// Reconcile runs a round (fetch, then pass) now; see Runner.Reconcile.
func (o *Operator) Reconcile(ctx context.Context) error {
	if o.Runner == nil {
		return ErrNotRunning
	}
	return o.Runner.Reconcile(ctx)
}

// wake asks for a round without waiting for it (none runs on a standby).
func (o *Operator) wake() {
	if o.Runner == nil {
		return
	}
	o.Runner.mu.Lock()
	kick := o.Runner.kickLocked()
	o.Runner.mu.Unlock()
	select {
	case kick <- struct{}{}:
	default:
	}
}

// known checks that service is in the desired fleet or has VMs, so a typo is refused
// instead of suspending nothing. Without a desired revision (a standby, a CLI) any
// valid name is taken: the fleet is not known here.
func (o *Operator) known(ctx context.Context, service string) error {
	if err := validService(service); err != nil {
		return err
	}
	if o.offline != nil {
		return o.offlineKnown(ctx, service)
	}
	if o.Runner == nil {
		return nil
	}
	rev, _, ok := o.Runner.Desired()
	if !ok {
		return nil
	}
	if _, in := rev.Fleet.Service(service); in {
		return nil
	}
	vms, err := o.Reconciler.cfg.Hypervisor.List(ctx)
	if err != nil {
		return fmt.Errorf("list vms: %w", err)
	}
	for _, vm := range vms {
		if vm.Meta.Fleet == o.Reconciler.cfg.Fleet && vm.Meta.Service == service {
			return nil
		}
	}
	return fmt.Errorf("%w %q in the fleet at %s, nor any VM of it", ErrUnknownService, service, shortRev(rev.Commit))
}
