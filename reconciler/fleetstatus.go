package reconciler

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/sources"
)

// Phases of a service in FleetStatus.
const (
	PhaseConverged  = "converged"
	PhaseRollingOut = "rolling-out"
	PhaseHeld       = "held"
	PhaseSuspended  = "suspended"
	PhasePruning    = "pruning"
	// PhaseUnknown: no desired revision is known here (a standby, a CLI reading Consul,
	// a Drover whose source never read well), so only what runs is shown.
	PhaseUnknown = "unknown"
)

// statusInput is what FleetStatus knows besides the world: the runner's side.
type statusInput struct {
	rev                 *sources.Revision
	lastFetch, lastPass time.Time
	err                 string
	leader              bool
}

// fleetStatus reads the world (VMs, instances, held revisions, suspensions) once and
// lays it against the desired revision. It reads and never acts.
func (r *Reconciler) fleetStatus(ctx context.Context, in statusInput) (FleetStatus, error) {
	out := FleetStatus{Fleet: r.cfg.Fleet, Leader: in.leader, LastFetch: in.lastFetch, LastPass: in.lastPass, Error: r.cfg.Secrets.String(in.err), Services: []ServiceStatus{}}
	all, err := r.cfg.Hypervisor.List(ctx)
	if err != nil {
		return out, fmt.Errorf("fleet status: list vms: %w", err)
	}
	instances, err := r.cfg.Health.Instances(ctx, Tag)
	if err != nil {
		return out, fmt.Errorf("fleet status: consul instances: %w", err)
	}
	failed, suspended, err := r.records(ctx)
	if err != nil {
		return out, fmt.Errorf("fleet status: %w", err)
	}
	byID := make(map[string]discovery.Instance, len(instances))
	for _, inst := range instances {
		if inst.Meta[MetaFleet] == r.cfg.Fleet {
			byID[inst.ID] = inst
		}
	}
	byService := map[string][]hypervisor.VM{}
	for _, vm := range all {
		if vm.Meta.Fleet == r.cfg.Fleet {
			byService[vm.Meta.Service] = append(byService[vm.Meta.Service], vm)
		}
	}
	busy := r.work.busy()
	if in.rev != nil {
		out.Revision, out.Ref, out.Tag = in.rev.Commit, in.rev.Ref, in.rev.Tag
		for _, svc := range in.rev.Fleet.Services {
			st := serviceStatus(svc, in.rev.Commit, byService[svc.Name], byID, busy[svc.Name])
			if f, ok := failed[svc.Name]; ok && f.Revision == in.rev.Commit && f.SpecHash == SpecHash(svc) {
				// Only while its commit is the desired one: a fixing commit ends it.
				st.Held = &Hold{Revision: f.Revision, Reason: r.redactReason(f.Reason), At: f.At}
				st.Phase = PhaseHeld
			}
			if s, ok := suspended[svc.Name]; ok {
				st.Suspended = &s
				st.Phase = PhaseSuspended
			}
			out.Services = append(out.Services, st)
			delete(byService, svc.Name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(byService)) {
		st := serviceStatus(sources.Service{Name: name}, "", byService[name], byID, busy[name])
		st.Phase = PhasePruning
		if in.rev == nil {
			st.Phase = PhaseUnknown
		}
		if s, ok := suspended[name]; ok {
			st.Suspended = &s
			st.Phase = PhaseSuspended
		}
		out.Services = append(out.Services, st)
	}
	return out, nil
}

// serviceStatus is one service's VMs against its desired spec (none, with an empty
// revision: a service only seen running).
func serviceStatus(svc sources.Service, revision string, vms []hypervisor.VM, byID map[string]discovery.Instance, busy bool) ServiceStatus {
	st := ServiceStatus{Name: svc.Name, Version: svc.Version, Revision: revision, Replicas: svc.Replicas,
		Versions: []VersionCount{}, VMs: make([]VMStatus, 0, len(vms)), Phase: PhaseConverged}
	var hash string
	if revision != "" {
		hash = SpecHash(svc)
	}
	counts := map[string]*VersionCount{}
	old := 0
	// Sorted by pointer: a VM is a large struct to move around.
	sorted := make([]*hypervisor.VM, len(vms))
	for i := range vms {
		sorted[i] = &vms[i]
	}
	slices.SortFunc(sorted, func(a, b *hypervisor.VM) int { return cmp.Compare(a.Name, b.Name) })
	for _, vm := range sorted {
		inst, registered := byID[vm.Name]
		health := "unregistered"
		addr := ""
		if registered {
			health = string(inst.Status)
			addr = fmt.Sprintf("%s:%d", inst.Address, inst.Port)
		} else if vm.Address != "" {
			addr = fmt.Sprintf("%s:%d", vm.Address, vm.Port)
		}
		st.VMs = append(st.VMs, VMStatus{Name: vm.Name, Version: vm.Meta.Version, Revision: vm.Meta.Revision, State: string(vm.State),
			Address: addr, Created: vm.Meta.Created, Health: health})
		c := counts[vm.Meta.Version]
		if c == nil {
			c = &VersionCount{Version: vm.Meta.Version}
			counts[vm.Meta.Version] = c
		}
		c.Total++
		passing := health == string(discovery.StatusPassing)
		if passing {
			c.Passing++
		}
		switch {
		case hash != "" && vm.Meta.SpecHash == hash && len(vm.Drift) == 0 && alive(*vm):
			if passing {
				st.Progress.Passing++
			}
			if st.Progress.Started.IsZero() || vm.Meta.Created.Before(st.Progress.Started) {
				st.Progress.Started = vm.Meta.Created
			}
		default:
			old++
		}
	}
	st.Progress.Wanted = svc.Replicas
	// The desired version first, then the others by name.
	for _, c := range counts {
		st.Versions = append(st.Versions, *c)
	}
	slices.SortFunc(st.Versions, func(a, b VersionCount) int {
		if (a.Version == svc.Version) != (b.Version == svc.Version) {
			if a.Version == svc.Version {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Version, b.Version)
	})
	if busy || old > 0 || st.Progress.Passing != svc.Replicas || len(vms)-old != svc.Replicas {
		st.Phase = PhaseRollingOut
	}
	return st
}

// records are what Consul keeps of the fleet besides its instances: the held
// revisions and the suspensions, by service.
func (r *Reconciler) records(ctx context.Context) (map[string]failure, map[string]Suspended, error) {
	failed, err := r.failures(ctx)
	if err != nil {
		return nil, nil, err
	}
	suspended, err := r.suspensions(ctx)
	if err != nil {
		return nil, nil, err
	}
	return failed, suspended, nil
}
