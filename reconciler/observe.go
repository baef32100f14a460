package reconciler

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/drover-dev/drover/discovery"
)

// observe reads the actual state. It fails, changing nothing, when either provider is
// unreachable: acting on a partial view could destroy what is serving.
func (r *Reconciler) observe(ctx context.Context) (Observed, error) {
	if err := r.cfg.Health.Ping(ctx); err != nil {
		return Observed{}, fmt.Errorf("observe: consul: %w", err)
	}
	obs, others, err := r.read(ctx)
	if err != nil {
		return Observed{}, err
	}
	r.noteOtherFleets(others)
	r.cfg.Hook(PointObserved)
	return obs, nil
}

// read lists this fleet's VMs and Consul instances, and counts the VMs of other fleets
// by fleet. It only reads: progress displays call it while passes run.
func (r *Reconciler) read(ctx context.Context) (obs Observed, others map[string]int, err error) {
	all, err := r.cfg.Hypervisor.List(ctx)
	if err != nil {
		return Observed{}, nil, fmt.Errorf("observe: list vms: %w", err)
	}
	allInstances, err := r.cfg.Health.Instances(ctx, Tag)
	if err != nil {
		return Observed{}, nil, fmt.Errorf("observe: consul instances: %w", err)
	}
	others = map[string]int{} // VMs of other fleets, by fleet
	for _, vm := range all {
		if vm.Meta.Fleet != r.cfg.Fleet {
			others[vm.Meta.Fleet]++
			continue
		}
		obs.VMs = append(obs.VMs, vm)
	}
	for _, in := range allInstances {
		if in.Meta[MetaFleet] == r.cfg.Fleet {
			obs.Instances = append(obs.Instances, in)
		}
	}
	return obs, others, nil
}

// sweep removes leftovers of VMs that no longer exist (an overlay made just before a
// kill -9, say). It deletes files, so only a pass that may act runs it — never `drover
// plan` — and it is fenced like every other mutating step. The drivers leave alone
// anything younger than a minute or in use, so a create in flight is never swept.
func (r *Reconciler) sweep(ctx context.Context) {
	var removed []string
	err := fenced(ctx, func(ctx context.Context) error {
		var err error
		removed, err = r.cfg.Hypervisor.Sweep(ctx)
		return err
	})
	if err != nil {
		r.log.Warn("sweeping leftovers of gone VMs", "err", err)
	}
	for _, path := range removed {
		r.log.Info("removed leftover of a VM that no longer exists", "path", path, "event", "repair")
	}
}

// noteOtherFleets logs the VMs of other fleets this Drover leaves alone whenever they
// change: expected when several fleets share a host, a sign of a changed --fleet (or
// repository) when they are the VMs this fleet used to run.
func (r *Reconciler) noteOtherFleets(others map[string]int) {
	parts := make([]string, 0, len(others))
	for _, f := range slices.Sorted(maps.Keys(others)) {
		name := f
		if name == "" {
			name = "(none)"
		}
		parts = append(parts, fmt.Sprintf("%s=%d", name, others[f]))
	}
	summary := strings.Join(parts, " ")
	r.mu.Lock()
	changed := summary != r.otherFleets
	r.otherFleets = summary
	r.mu.Unlock()
	if changed && summary != "" {
		r.log.Info("leaving alone the VMs of other fleets on this host", "fleet", r.cfg.Fleet, "vms_by_fleet", summary)
	}
}

// trackHealth updates and returns since when each instance has been failing its check,
// and which instances have passed at least once. Instances in maintenance are being
// drained by Drover, not failing.
func (r *Reconciler) trackHealth(instances []discovery.Instance, now time.Time) (map[string]time.Time, map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, in := range instances {
		seen[in.ID] = true
		switch in.Status {
		case discovery.StatusCritical, discovery.StatusWarning:
			if _, ok := r.failingSince[in.ID]; !ok {
				r.failingSince[in.ID] = now
			}
		case discovery.StatusPassing:
			r.passed[in.ID] = true
			delete(r.failingSince, in.ID)
		default:
			delete(r.failingSince, in.ID)
		}
	}
	passed := make(map[string]bool, len(r.passed))
	for id := range r.passed {
		if !seen[id] {
			delete(r.passed, id)
			continue
		}
		passed[id] = true
	}
	out := make(map[string]time.Time, len(r.failingSince))
	for id, since := range r.failingSince {
		if !seen[id] {
			delete(r.failingSince, id)
			continue
		}
		out[id] = since
	}
	return out, passed
}
