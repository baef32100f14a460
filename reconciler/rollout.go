package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/sources"
)

// execute carries out one step of a service's plan under its strategy: retire what the
// strategy lets go at once (rolling), boot the step's VMs in parallel, gate on health,
// and only then drain the predecessors due after the gate. The context is checked
// between steps; each step, once begun, completes.
func (r *Reconciler) execute(ctx context.Context, log *slog.Logger, revision string, svc sources.Service, sp ServicePlan) error {
	var errs []error
	for name, why := range sp.Replace {
		log.Warn("replacing vm", "vm", name, "event", "repair", "reason", why)
		if goesNow(sp, name) {
			r.emit(ctx, Event{Kind: EventDriftRepaired, Service: svc.Name, Revision: revision, Version: svc.Version, VMs: []string{name}, Reason: why})
		}
	}
	for _, vm := range sp.Remove {
		log.Warn("removing vm that is not running", "vm", vm.Name, "event", "repair", "state", vm.State)
		if err := r.remove(ctx, log, vm); err != nil {
			errs = append(errs, err)
			continue
		}
		r.emit(ctx, removedEvent(sp, vm))
	}
	for _, vm := range sp.Register {
		if vm.Address == "" {
			// A DHCP guest whose address no source knows yet: registered without one,
			// Consul would check the agent's own address. A later pass registers it.
			log.Info("not registering vm again until its address is known", "vm", vm.Name, "sources", vm.AddressSources)
			continue
		}
		// Consul does not have it (restarted without its state, or Drover stopped
		// between boot and registration): registered passing if it answers now, so a
		// serving VM is not shown critical until Consul's first check.
		reg := registration(svc, vm)
		reg.Passing = r.cfg.Health.Probe(ctx, reg) == nil
		err := r.finish(ctx, func(ctx context.Context) error { return r.cfg.Registrar.Register(ctx, reg) })
		if err != nil {
			errs = append(errs, fmt.Errorf("register %s again: %w", vm.Name, err))
			continue
		}
		log.Info("registered running VM again in consul", "vm", vm.Name, "answered", reg.Passing)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if sp.Prune {
		return r.retire(ctx, log, sp.Retire, r.cfg.PruneDrain, r.cfg.PruneShutdownTimeout, "service removed from the fleet")
	}

	if r.rolloutBegins(sp) {
		r.emit(ctx, Event{Kind: EventRolloutStarted, Service: svc.Name, Revision: revision, Version: svc.Version, VMs: names(sp.Predecessors),
			Reason: fmt.Sprintf("%s to %d replica(s), replacing %d VM(s)", svc.Update.Strategy, svc.Replicas, len(sp.Predecessors))})
	}
	why := "retired by the rollout of version " + svc.Version
	// Rolling: predecessors the strategy lets go before this step's VMs exist.
	if err := r.retire(ctx, log, sp.RetireFirst, svc.Update.Drain, svc.Update.ShutdownTimeout, why); err != nil {
		return err
	}
	if sp.Create > 0 || len(sp.Retire) > 0 || len(sp.Pending) > 0 {
		if err := r.rollout(ctx, log, revision, svc, sp); err != nil {
			return err
		}
	}
	if err := r.retire(ctx, log, sp.Retire, svc.Update.Drain, svc.Update.ShutdownTimeout, why); err != nil {
		return err
	}
	if r.rolloutEnds(sp) {
		r.emit(ctx, Event{Kind: EventRolloutSucceeded, Service: svc.Name, Revision: revision, Version: svc.Version,
			Reason: fmt.Sprintf("%d replica(s) of version %s passing", svc.Replicas, svc.Version)})
	}
	return nil
}

// rollout creates the missing VMs and waits until every VM of the desired spec passes
// its check for min_healthy_time, within healthy_deadline. On failure the new VMs are
// destroyed (with auto_rollback), the predecessors keep serving, and the revision is held.
func (r *Reconciler) rollout(ctx context.Context, log *slog.Logger, revision string, svc sources.Service, sp ServicePlan) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var spec hypervisor.Spec
	if sp.Create > 0 {
		// Images first, before healthy_deadline starts: a big image on a slow link is
		// not an unhealthy revision. The cache bounds each download itself.
		var err error
		if spec, err = r.baseSpec(ctx, svc, sp.SpecHash, revision); err != nil {
			var checksum *sources.ChecksumError
			if !errors.As(err, &checksum) {
				// Interrupted, refused or unreachable: retried by the next pass, never
				// a verdict on the revision.
				return fmt.Errorf("rollout of %s waits for its images: %w", svc.Name, err)
			}
			rerr := &RolloutError{Service: svc.Name, Revision: revision, Err: err, RolledBack: true}
			r.rolloutOver(svc.Name)
			r.emit(ctx, Event{Kind: EventRolloutFailed, Service: svc.Name, Revision: revision, Version: svc.Version, Reason: err.Error()})
			r.recordFailure(ctx, svc.Name, failure{Revision: revision, SpecHash: sp.SpecHash, Reason: err.Error()})
			log.Error("rollout failed before any VM was created", "version", svc.Version, "err", err)
			return rerr
		}
	}
	started := time.Now()
	created, err := r.createAll(ctx, log, spec, svc, sp)
	// healthy_deadline counts from the VMs' existence: neither a wait for a create slot
	// (MaxParallelCreates across the fleet) nor the creates themselves, each bounded by
	// OpTimeout, are the revision's health.
	gateStart := time.Now()
	gateCtx, cancel := context.WithTimeout(ctx, svc.Update.HealthyDeadline)
	defer cancel()
	// registered holds the created VMs that answered their check and were registered.
	// The others stay unregistered while the rollout may still destroy them; the
	// rollout registers them (critical) before it returns leaving them in place.
	var registered map[string]bool
	if err == nil {
		ids := make([]string, 0, len(sp.Current)+len(created))
		for _, vm := range append(append([]hypervisor.VM{}, sp.Current...), created...) {
			// Extras about to be retired need not pass: they are going anyway.
			if !slices.ContainsFunc(sp.Retire, func(r hypervisor.VM) bool { return r.Name == vm.Name }) {
				ids = append(ids, vm.Name)
			}
		}
		probes := r.probeAll(gateCtx, log, svc, created)
		r.cfg.Hook(PointGateWaiting)
		err = r.cfg.Health.WaitPassing(gateCtx, svc.Name, ids, svc.Update.MinHealthyTime)
		// Every probe ends before a rollback can deregister what it would register.
		registered = probes.stop()
		if len(created) > 0 || len(sp.Pending) > 0 {
			// Only a gate new VMs wait at: a scale-down waits for the VMs that serve.
			r.observeGate(ctx, svc.Name, time.Since(gateStart), err)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			if never := probes.neverAnswered(); never != "" {
				err = fmt.Errorf("%s within healthy_deadline %s; %w", never, svc.Update.HealthyDeadline, err)
			}
		}
		if err == nil {
			r.cfg.Hook(PointGatePassed)
			if len(created) > 0 || len(sp.Pending) > 0 {
				log.Info("rollout healthy", "version", svc.Version, "created", len(created), "took", time.Since(started).Round(time.Millisecond))
			}
			return nil
		}
	}
	if ctx.Err() != nil {
		// Stopped by a signal, not failed: what was created is registered and carries its
		// metadata, so the next pass resumes from it.
		return errors.Join(ctx.Err(), r.registerRest(ctx, log, svc, created, registered))
	}
	if errors.Is(err, discovery.ErrUnavailable) {
		// Consul went away mid-rollout: an outage, not a verdict on the revision. The new
		// VMs stay (they carry their metadata); the next pass registers them if Consul
		// does not have them and resumes the gate.
		return fmt.Errorf("rollout of %s interrupted: %w", svc.Name, err)
	}
	if len(created) == 0 && len(sp.Predecessors) == 0 && len(sp.Pending) > 0 && errors.Is(err, context.DeadlineExceeded) {
		// Only VMs of an interrupted rollout were waited for, and nothing else serves
		// this service. Those that never passed within healthy_deadline are failed
		// boots: they go, and the next pass boots replacements. Not a failed revision.
		return r.removeNeverPassed(ctx, log, svc, sp.Pending)
	}
	var boot *createError
	// A create cut by a lapsed leadership (or a signal) is no verdict on the revision. A
	// spec the driver calls invalid (a disk_size below the golden disk) is one, even
	// when no VM was created: the same spec would be refused on every pass.
	verdict := (errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &boot) && (len(created) > 0 || errors.Is(err, hypervisor.ErrInvalidSpec)))) && !errors.Is(err, context.Canceled)
	if !verdict {
		// Not the revision's fault (say, libvirtd or Consul is down, or failed mid-way):
		// an operational error. What was created stays, carrying its metadata, and the
		// next pass resumes from it.
		return errors.Join(fmt.Errorf("rollout of %s interrupted: %w", svc.Name, err), r.registerRest(ctx, log, svc, created, registered))
	}

	rerr := &RolloutError{Service: svc.Name, Revision: revision, Err: err}
	r.rolloutOver(svc.Name)
	r.emit(ctx, Event{Kind: EventRolloutFailed, Service: svc.Name, Revision: revision, Version: svc.Version, VMs: names(created), Reason: err.Error()})
	r.cfg.Hook(PointRollback)
	if svc.Update.AutoRollback {
		doomed := created
		if len(sp.Predecessors) > 0 {
			// The current VMs are this failed spec too; the predecessors are what serves.
			doomed = append(doomed, sp.Current...)
		}
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
		)
		for _, vm := range doomed {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := r.remove(ctx, log, vm); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		rerr.RolledBack = len(errs) == 0
		if len(errs) > 0 {
			rerr.Err = errors.Join(append([]error{err}, errs...)...)
		} else {
			r.emit(ctx, Event{Kind: EventRolledBack, Service: svc.Name, Revision: revision, Version: svc.Version, VMs: names(doomed),
				Reason: fmt.Sprintf("destroyed the new VMs; %d predecessor(s) keep serving", len(sp.Predecessors))})
		}
	}
	if !svc.Update.AutoRollback {
		// The failed VMs stay for inspection, visible in Consul as the critical
		// instances they are.
		if rerr2 := r.registerRest(ctx, log, svc, created, registered); rerr2 != nil {
			rerr.Err = errors.Join(err, rerr2)
		}
	}
	r.recordFailure(ctx, svc.Name, failure{Revision: revision, SpecHash: sp.SpecHash, Reason: err.Error()})
	log.Error("rollout failed", "version", svc.Version, "rolled_back", rerr.RolledBack, "err", err)
	return rerr
}

// observeGate reports a gate that ended with a verdict to Config.Metrics: passed
// (err nil) or not within healthy_deadline. A gate cut by ctx or by Consul going away
// is not reported.
func (r *Reconciler) observeGate(ctx context.Context, service string, waited time.Duration, err error) {
	if r.cfg.Metrics == nil {
		return
	}
	switch {
	case err == nil:
		r.cfg.Metrics.ObserveGateWait(service, waited, true)
	case ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, discovery.ErrUnavailable):
		r.cfg.Metrics.ObserveGateWait(service, waited, false)
	}
}

// createError is a VM the driver failed to create. When its siblings were created, the
// spec is at fault (a boot the hypervisor refuses), and the rollout fails like one that
// never became healthy; when none was, the hypervisor may just be down.
type createError struct {
	vm  string
	err error
}

func (e *createError) Error() string { return fmt.Sprintf("create %s: %v", e.vm, e.err) }
func (e *createError) Unwrap() error { return e.err }

// createAll boots sp.Create VMs of spec in parallel (at most MaxParallelCreates across
// the fleet); probeAll registers each in Consul once it answers. It returns every VM that
// was created, even on error, so the caller can roll them back.
func (r *Reconciler) createAll(ctx context.Context, log *slog.Logger, spec hypervisor.Spec, svc sources.Service, sp ServicePlan) ([]hypervisor.VM, error) {
	if sp.Create == 0 {
		return nil, nil
	}
	taken := map[string]bool{}
	for _, vm := range append(append([]hypervisor.VM{}, sp.Current...), sp.Predecessors...) {
		taken[vm.Name] = true
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created []hypervisor.VM
		errs    []error
	)
	names := make([]string, 0, sp.Create)
	for range sp.Create {
		name, err := r.vmName(svc.Name, sp.SpecHash, taken)
		if err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	// All of the step's addresses before any VM: an exhausted pool changes nothing.
	addrs, err := r.reserveAddresses(ctx, svc, names)
	if err != nil {
		return nil, err
	}
	for i, name := range names {
		s := spec
		s.Name = name
		s.Meta.Created = r.cfg.Now().UTC()
		var addr netip.Prefix
		if addrs != nil {
			addr = addrs[i]
		}
		s = withNetwork(s, svc, addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			vm, err := r.createOne(ctx, log, svc, s)
			if vm.Name == "" && addr.IsValid() {
				// Never created, so nothing else will free it.
				r.releaseAddress(ctx, name, addr.Addr())
			}
			mu.Lock()
			defer mu.Unlock()
			if vm.Name != "" {
				created = append(created, vm)
			}
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	return created, errors.Join(errs...)
}

func (r *Reconciler) createOne(ctx context.Context, log *slog.Logger, svc sources.Service, spec hypervisor.Spec) (hypervisor.VM, error) {
	select {
	case r.creates <- struct{}{}:
		defer func() { <-r.creates }()
	case <-ctx.Done():
		return hypervisor.VM{}, ctx.Err()
	}
	if err := ctx.Err(); err != nil {
		return hypervisor.VM{}, err
	}
	spec = withSeed(svc, spec)
	var vm hypervisor.VM
	err := r.finish(ctx, func(ctx context.Context) error {
		var err error
		vm, err = r.cfg.Hypervisor.Create(ctx, spec)
		return err
	})
	if err != nil {
		return hypervisor.VM{}, &createError{vm: spec.Name, err: err}
	}
	r.cfg.Hook(PointCreated)
	r.emit(ctx, Event{Kind: EventVMCreated, Service: svc.Name, Revision: spec.Meta.Revision, Version: svc.Version, VMs: []string{vm.Name}})
	log.Info("created vm", "vm", vm.Name, "address", fmt.Sprintf("%s:%d", vm.Address, vm.Port))
	return vm, nil
}

// registerRest registers, critical, the created VMs the rollout leaves in place without
// their having answered their check, so every VM Drover made is visible in Consul.
func (r *Reconciler) registerRest(ctx context.Context, log *slog.Logger, svc sources.Service, created []hypervisor.VM, registered map[string]bool) error {
	var errs []error
	for _, vm := range created {
		if registered[vm.Name] {
			continue
		}
		if err := r.finish(ctx, func(ctx context.Context) error { return r.cfg.Registrar.Register(ctx, registration(svc, vm)) }); err != nil {
			errs = append(errs, fmt.Errorf("register %s: %w", vm.Name, err))
			continue
		}
		r.cfg.Hook(PointRegistered)
		log.Debug("registered vm that has not answered its check yet", "vm", vm.Name)
	}
	return errors.Join(errs...)
}

// baseSpec is the hypervisor spec every new VM of svc shares, with images resolved to
// verified local files.
func (r *Reconciler) baseSpec(ctx context.Context, svc sources.Service, hash, revision string) (hypervisor.Spec, error) {
	spec := hypervisor.Spec{
		CPUs:      svc.CPUs,
		MemoryMiB: svc.MemoryMiB,
		Cmdline:   svc.Image.Cmdline,
		// Firmware matters only for a disk booted without a kernel; "" is BIOS.
		Firmware:      firmware(svc.Image),
		DiskSizeBytes: svc.Image.DiskSizeBytes,
		Network:       hypervisor.Network{Mode: svc.Network.Mode, Bridge: svc.Network.Bridge, Network: svc.Network.Network},
		GuestPort:     svc.Port,
		Meta:          hypervisor.Metadata{Fleet: r.cfg.Fleet, Service: svc.Name, SpecHash: hash, Revision: revision, Version: svc.Version},
	}
	for _, img := range []struct {
		artifact *sources.Artifact
		path     *string
	}{{svc.Image.Kernel, &spec.Kernel}, {svc.Image.Initrd, &spec.Initrd}, {svc.Image.Disk, &spec.Disk}} {
		if img.artifact == nil {
			continue
		}
		path, err := r.cfg.Images.Get(ctx, *img.artifact)
		if err != nil {
			return hypervisor.Spec{}, fmt.Errorf("image %s: %w", img.artifact.URL, err)
		}
		*img.path = path
	}
	return spec, nil
}
