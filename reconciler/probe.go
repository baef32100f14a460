package reconciler

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/sources"
)

// probeAll runs each new VM's check from here every ProbeInterval until it passes, then
// registers the VM in Consul with its check passing, so the gate starts counting
// min_healthy_time when the guest is healthy rather than up to a check interval
// later. Consul checks on from there, and the gate still requires Consul to see the VM
// passing for min_healthy_time.
//
// A VM is registered once, after it answered: never registered critical first and
// then again as passing. Consul keeps the status of a check that is registered again,
// and when the earlier registration has not yet reached its catalog, it can take the
// repeated one as already synced and show the old status for up to two minutes
// (consul 1.15 to 1.22, agent/local State.setCheckStateLocked); a CI run saw a
// healthy VM stay critical in the catalog until its rollout's deadline.
func (r *Reconciler) probeAll(ctx context.Context, log *slog.Logger, svc sources.Service, vms []hypervisor.VM) *probes {
	ctx, cancel := context.WithCancel(ctx)
	p := &probes{cancel: cancel, registered: map[string]bool{}, lastErr: map[string]error{}}
	for _, vm := range vms {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if vm.Address == "" && svc.Network.Mode != hypervisor.NetworkUser {
				var ok bool
				if vm, ok = r.awaitAddress(ctx, p, vm); !ok {
					return
				}
				log.Info("learned vm address", "vm", vm.Name, "address", vm.Address, "mac", vm.Meta.MAC)
			}
			reg := registration(svc, vm)
			if !r.awaitAnswer(ctx, p, vm.Name, reg) {
				return
			}
			r.cfg.Hook(PointProbePassed)
			log.Debug("vm answered its check", "vm", vm.Name)
			reg.Passing = true
			tick := time.NewTicker(r.cfg.ProbeInterval)
			defer tick.Stop()
			for {
				err := fenced(ctx, func(ctx context.Context) error { return r.cfg.Registrar.Register(ctx, reg) })
				if err == nil {
					p.mu.Lock()
					p.registered[vm.Name] = true
					p.mu.Unlock()
					r.cfg.Hook(PointRegistered)
					return
				}
				if ctx.Err() == nil {
					// Retried: a VM left unregistered would fail the gate.
					log.Warn("register healthy vm", "vm", vm.Name, "err", err)
				}
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	return p
}

// maxProbesInFlight bounds the overlapping probes of one VM.
const maxProbesInFlight = 8

// awaitAnswer runs reg's check against a VM every ProbeInterval until it passes (true)
// or ctx ends (false). Probes overlap, up to maxProbesInFlight: one that hangs does not
// hold back the next. A booting guest behind QEMU's user networking does hang them:
// QEMU accepts the connection and the guest answers nothing until its network is up,
// so a probe started early waits for QEMU to resend the SYN, or for the check's
// timeout (10 s by default). A fresh probe every ProbeInterval notices the guest
// within about a ProbeInterval of its answering.
func (r *Reconciler) awaitAnswer(ctx context.Context, p *probes, name string, reg discovery.Registration) bool {
	ctx, cancel := context.WithCancel(ctx)
	results := make(chan error, maxProbesInFlight)
	inflight := 0
	defer func() {
		cancel()
		for ; inflight > 0; inflight-- {
			<-results
		}
	}()
	launch := func() {
		if inflight < maxProbesInFlight {
			inflight++
			go func() { results <- r.cfg.Health.Probe(ctx, reg) }()
		}
	}
	tick := time.NewTicker(r.cfg.ProbeInterval)
	defer tick.Stop()
	launch()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
			launch()
		case err := <-results:
			inflight--
			p.mu.Lock()
			if err == nil {
				delete(p.lastErr, name)
			} else if ctx.Err() == nil {
				p.lastErr[name] = err
			}
			p.mu.Unlock()
			if err == nil {
				return true
			}
		}
	}
}

// probes are the running probeAll goroutines.
type probes struct {
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	mu         sync.Mutex
	registered map[string]bool
	lastErr    map[string]error // VMs that have not answered yet: why, the last time
}

// stop ends the probes, waits for them, and returns the VMs they registered.
func (p *probes) stop() map[string]bool {
	p.cancel()
	p.wg.Wait()
	return p.registered
}

// neverAnswered describes the VMs that never passed their check when Drover ran it, with the last
// probe's error, or "" when every VM answered.
func (p *probes) neverAnswered() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	names := slices.Sorted(maps.Keys(p.lastErr))
	parts := make([]string, 0, len(names))
	for _, name := range names {
		parts = append(parts, fmt.Sprintf("%s never passed its check from here (last probe: %v)", name, p.lastErr[name]))
	}
	return strings.Join(parts, "; ")
}
