package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	}
	for _, vm := range sp.Remove {
		log.Warn("removing vm that is not running", "vm", vm.Name, "event", "repair", "state", vm.State)
		if err := r.remove(ctx, log, vm); err != nil {
			errs = append(errs, err)
		}
	}
	for _, vm := range sp.Register {
		err := r.finish(ctx, func(ctx context.Context) error { return r.cfg.Registry.Register(ctx, registration(svc, vm)) })
		if err != nil {
			errs = append(errs, fmt.Errorf("register %s again: %w", vm.Name, err))
			continue
		}
		log.Info("registered running VM again in consul", "vm", vm.Name)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if sp.Prune {
		return r.retire(ctx, log, sp.Retire, r.cfg.PruneDrain, r.cfg.PruneShutdownTimeout)
	}

	// Rolling: predecessors the strategy lets go before this step's VMs exist.
	if err := r.retire(ctx, log, sp.RetireFirst, svc.Update.Drain, svc.Update.ShutdownTimeout); err != nil {
		return err
	}
	if sp.Create > 0 || len(sp.Retire) > 0 || len(sp.Pending) > 0 {
		if err := r.rollout(ctx, log, revision, svc, sp); err != nil {
			return err
		}
	}
	return r.retire(ctx, log, sp.Retire, svc.Update.Drain, svc.Update.ShutdownTimeout)
}

// rollout creates the missing VMs and waits until every VM of the desired spec passes
// its check for min_healthy_time, within healthy_deadline. On failure the new VMs are
// destroyed (with auto_rollback), the predecessors keep serving, and the revision is held.
func (r *Reconciler) rollout(ctx context.Context, log *slog.Logger, revision string, svc sources.Service, sp ServicePlan) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	gateCtx, cancel := context.WithTimeout(ctx, svc.Update.HealthyDeadline)
	defer cancel()
	started := time.Now()

	created, err := r.createAll(gateCtx, log, revision, svc, sp)
	if err == nil {
		ids := make([]string, 0, len(sp.Current)+len(created))
		for _, vm := range append(append([]hypervisor.VM{}, sp.Current...), created...) {
			// Extras about to be retired need not pass: they are going anyway.
			if !slices.ContainsFunc(sp.Retire, func(r hypervisor.VM) bool { return r.Name == vm.Name }) {
				ids = append(ids, vm.Name)
			}
		}
		stopProbes := r.probeAll(gateCtx, log, svc, append(append([]hypervisor.VM{}, sp.Pending...), created...))
		r.cfg.Hook(PointGateWaiting)
		err = r.cfg.Registry.WaitPassing(gateCtx, svc.Name, ids, svc.Update.MinHealthyTime)
		// Every probe ends before a rollback can deregister what it would register.
		stopProbes()
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
		return ctx.Err()
	}
	if errors.Is(err, discovery.ErrUnavailable) {
		// Consul went away mid-rollout: an outage, not a verdict on the revision. The new
		// VMs stay (they carry their metadata); the next pass registers them again if
		// Consul lost them and resumes the gate.
		return fmt.Errorf("rollout of %s interrupted: %w", svc.Name, err)
	}
	if len(created) == 0 && len(sp.Predecessors) == 0 && len(sp.Pending) > 0 && errors.Is(err, context.DeadlineExceeded) {
		// Only VMs of an interrupted rollout were waited for, and nothing else serves
		// this service. Those that never passed within healthy_deadline are failed
		// boots: they go, and the next pass boots replacements. Not a failed revision.
		return r.removeNeverPassed(ctx, log, svc, sp.Pending)
	}
	var (
		checksum *sources.ChecksumError
		boot     *createError
	)
	verdict := errors.Is(err, context.DeadlineExceeded) || errors.As(err, &checksum) || (errors.As(err, &boot) && len(created) > 0)
	if !verdict {
		// Not the revision's fault (say, libvirtd or Consul is down, or failed mid-way):
		// an operational error. What was created stays, carrying its metadata, and the
		// next pass resumes from it.
		return fmt.Errorf("rollout of %s interrupted: %w", svc.Name, err)
	}

	rerr := &RolloutError{Service: svc.Name, Revision: revision, Err: err}
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
		}
	}
	r.recordFailure(svc.Name, failure{Revision: revision, SpecHash: sp.SpecHash, Reason: err.Error()})
	log.Error("rollout failed", "version", svc.Version, "rolled_back", rerr.RolledBack, "err", err)
	return rerr
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

// removeNeverPassed removes the VMs among vms that Consul does not see passing.
func (r *Reconciler) removeNeverPassed(ctx context.Context, log *slog.Logger, svc sources.Service, vms []hypervisor.VM) error {
	instances, err := r.cfg.Registry.Instances(ctx, Tag)
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", svc.Name, err)
	}
	passing := map[string]bool{}
	for _, in := range instances {
		passing[in.ID] = in.Status == discovery.StatusPassing
	}
	var errs []error
	for _, vm := range vms {
		if passing[vm.Name] {
			continue
		}
		log.Warn("removing vm that never passed its check", "vm", vm.Name, "event", "repair", "healthy_deadline", svc.Update.HealthyDeadline)
		if err := r.remove(ctx, log, vm); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// createAll resolves the images and boots sp.Create VMs in parallel, registering each in
// Consul as soon as it exists. It returns every VM that was created, even on error, so
// the caller can roll them back.
func (r *Reconciler) createAll(ctx context.Context, log *slog.Logger, revision string, svc sources.Service, sp ServicePlan) ([]hypervisor.VM, error) {
	if sp.Create == 0 {
		return nil, nil
	}
	spec, err := r.baseSpec(ctx, svc, sp.SpecHash, revision)
	if err != nil {
		return nil, err
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
	for range sp.Create {
		s := spec
		s.Name = r.vmName(svc.Name, sp.SpecHash, taken)
		s.Meta.Created = r.cfg.Now().UTC()
		wg.Add(1)
		go func() {
			defer wg.Done()
			vm, err := r.createOne(ctx, log, svc, s)
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
	if err := ctx.Err(); err != nil {
		return hypervisor.VM{}, err
	}
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
	log.Info("created vm", "vm", vm.Name, "address", fmt.Sprintf("%s:%d", vm.Address, vm.Port))
	err = r.finish(ctx, func(ctx context.Context) error { return r.cfg.Registry.Register(ctx, registration(svc, vm)) })
	if err != nil {
		return vm, fmt.Errorf("register %s: %w", vm.Name, err)
	}
	r.cfg.Hook(PointRegistered)
	return vm, nil
}

// probeAll runs each new VM's check from here every ProbeInterval until it passes, then
// registers the VM again as passing, so the gate wakes when the guest is healthy rather
// than up to a check interval later. Consul keeps checking from then on, and the gate
// still requires Consul to see every VM passing for min_healthy_time. The returned
// func stops the probes and waits for them.
func (r *Reconciler) probeAll(ctx context.Context, log *slog.Logger, svc sources.Service, vms []hypervisor.VM) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, vm := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reg := registration(svc, vm)
			tick := time.NewTicker(r.cfg.ProbeInterval)
			defer tick.Stop()
			for {
				if err := r.cfg.Registry.Probe(ctx, reg); err == nil {
					reg.Passing = true
					if err := r.cfg.Registry.Register(ctx, reg); err != nil && ctx.Err() == nil {
						log.Warn("register healthy vm as passing", "vm", vm.Name, "err", err)
					}
					r.cfg.Hook(PointProbePassed)
					log.Debug("vm answered its check", "vm", vm.Name)
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	return func() { cancel(); wg.Wait() }
}

// baseSpec is the hypervisor spec every new VM of svc shares, with images resolved to
// verified local files.
func (r *Reconciler) baseSpec(ctx context.Context, svc sources.Service, hash, revision string) (hypervisor.Spec, error) {
	spec := hypervisor.Spec{
		CPUs:      svc.CPUs,
		MemoryMiB: svc.MemoryMiB,
		Cmdline:   svc.Image.Cmdline,
		Network:   hypervisor.Network{Mode: svc.Network.Mode, Bridge: svc.Network.Bridge, Network: svc.Network.Network},
		GuestPort: svc.Port,
		Meta:      hypervisor.Metadata{Service: svc.Name, SpecHash: hash, Revision: revision, Version: svc.Version},
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

// retire drains VMs that are serving: maintenance mode takes them out of Consul's
// passing results, clients get `drain` to move away, then each is shut down, destroyed
// and deregistered. A VM whose maintenance could not be set is left running.
func (r *Reconciler) retire(ctx context.Context, log *slog.Logger, vms []hypervisor.VM, drain, shutdownTimeout time.Duration) error {
	if len(vms) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var errs []error
	var unregistered []hypervisor.VM
	draining := make([]hypervisor.VM, 0, len(vms))
	for _, vm := range vms {
		err := r.finish(ctx, func(ctx context.Context) error {
			return r.cfg.Registry.SetMaintenance(ctx, vm.Name, true, "drover: draining before destroy")
		})
		if errors.Is(err, discovery.ErrNotFound) {
			// Not in Consul, so no client is sent to it: nothing to drain.
			unregistered = append(unregistered, vm)
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("drain %s: %w", vm.Name, err))
			continue
		}
		r.cfg.Hook(PointMaintenance)
		draining = append(draining, vm)
	}
	if len(draining) > 0 && drain > 0 {
		log.Info("draining", "vms", len(draining), "drain", drain)
		t := time.NewTimer(drain)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			// In maintenance and still running: the next pass drains them again.
			return errors.Join(append(errs, ctx.Err())...)
		}
		r.cfg.Hook(PointDrained)
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for _, vm := range append(draining, unregistered...) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := r.finish(ctx, func(ctx context.Context) error {
				if err := r.cfg.Hypervisor.Shutdown(ctx, vm.Name, shutdownTimeout); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
					return fmt.Errorf("shutdown %s: %w", vm.Name, err)
				}
				r.cfg.Hook(PointShutdown)
				return nil
			})
			if err == nil {
				err = r.remove(ctx, log, vm)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			log.Info("retired vm", "vm", vm.Name, "version", vm.Meta.Version)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// remove destroys a VM and deregisters it, in that order: a crash in between leaves a
// registration without a VM, which the next pass deregisters as an orphan.
func (r *Reconciler) remove(ctx context.Context, log *slog.Logger, vm hypervisor.VM) error {
	return r.finish(ctx, func(ctx context.Context) error {
		if err := r.cfg.Hypervisor.Destroy(ctx, vm.Name); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
			return fmt.Errorf("destroy %s: %w", vm.Name, err)
		}
		r.cfg.Hook(PointDestroyed)
		if err := r.cfg.Registry.Deregister(ctx, vm.Name); err != nil {
			return fmt.Errorf("deregister %s: %w", vm.Name, err)
		}
		r.cfg.Hook(PointDeregistered)
		log.Debug("removed vm", "vm", vm.Name)
		return nil
	})
}
