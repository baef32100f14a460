package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/sources"
)

// removeNeverPassed removes the VMs among vms that Consul does not see passing.
func (r *Reconciler) removeNeverPassed(ctx context.Context, log *slog.Logger, svc sources.Service, vms []hypervisor.VM) error {
	instances, err := r.cfg.Health.Instances(ctx, Tag)
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
			continue
		}
		r.emit(ctx, retiredEvent(vm, fmt.Sprintf("never passed its check within healthy_deadline %s; the next pass boots a replacement", svc.Update.HealthyDeadline)))
	}
	return errors.Join(errs...)
}

// retire drains VMs that are serving: maintenance mode takes them out of Consul's
// passing results, clients get `drain` to move away, then each is shut down, destroyed
// and deregistered. A VM whose maintenance could not be set is left running. why is the
// reason its vm_retired event gives.
func (r *Reconciler) retire(ctx context.Context, log *slog.Logger, vms []hypervisor.VM, drain, shutdownTimeout time.Duration, why string) error {
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
			return r.cfg.Registrar.SetMaintenance(ctx, vm.Name, true, "drover: draining before destroy")
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
			r.emit(ctx, retiredEvent(vm, why))
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
		if err := r.cfg.Registrar.Deregister(ctx, vm.Name); err != nil {
			return fmt.Errorf("deregister %s: %w", vm.Name, err)
		}
		r.cfg.Hook(PointDeregistered)
		r.releaseVMAddress(ctx, vm)
		log.Debug("removed vm", "vm", vm.Name)
		return nil
	})
}
