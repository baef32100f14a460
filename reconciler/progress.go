package reconciler

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/sources"
)

// Phases of a service, as ServiceStatus.Phase reports them.
const (
	PhaseConverged  = "converged"
	PhaseRollingOut = "rolling-out"
	PhaseHeld       = "held"
	PhasePruning    = "pruning"
)

// Rollouts reads how far each service is from rev, changing nothing: per service its
// phase, the VMs of the desired spec passing out of replicas (Progress; Started is when
// the oldest of them was created, while the service is rolling out) and the running
// instances per version. It is level-based like a pass, reading the hypervisor and
// Consul each time, and cheap enough for a terminal to call a few times a second
// while passes run (`drover run --once`, `drover plan`). Services gone from the fleet
// that still have VMs come last, pruning. Name, Version, Replicas, Phase, Progress,
// Versions and Held are set; the rest of ServiceStatus is left to FleetStatus.
func (r *Reconciler) Rollouts(ctx context.Context, rev sources.Revision) ([]ServiceStatus, error) {
	obs, _, err := r.read(ctx)
	if err != nil {
		return nil, err
	}
	failed, err := r.failures(ctx)
	if err != nil {
		return nil, err
	}
	return rollouts(rev, obs, failed, r.work.busy()), nil
}

// rollouts is Rollouts over what was read.
func rollouts(rev sources.Revision, obs Observed, failed map[string]failure, busy map[string]bool) []ServiceStatus {
	passing := map[string]bool{}
	for _, in := range obs.Instances {
		passing[in.ID] = in.Status == discovery.StatusPassing
	}
	byService := map[string][]hypervisor.VM{}
	for _, vm := range obs.VMs {
		if alive(vm) {
			byService[vm.Meta.Service] = append(byService[vm.Meta.Service], vm)
		}
	}
	var out []ServiceStatus
	var fleet []sources.Service
	if rev.Fleet != nil {
		fleet = rev.Fleet.Services
	}
	for _, svc := range fleet {
		hash := SpecHash(svc)
		st := ServiceStatus{Name: svc.Name, Version: svc.Version, Revision: rev.Commit, Replicas: svc.Replicas}
		vms := byService[svc.Name]
		delete(byService, svc.Name)
		st.Versions = versionCounts(vms, passing)
		current, others := 0, 0
		var started time.Time
		for _, vm := range vms {
			if vm.Meta.SpecHash != hash {
				others++
				continue
			}
			current++
			if passing[vm.Name] {
				st.Progress.Passing++
			}
			if started.IsZero() || vm.Meta.Created.Before(started) {
				started = vm.Meta.Created
			}
		}
		st.Progress.Wanted = svc.Replicas
		switch f, ok := failed[svc.Name]; {
		case ok && f.Revision == rev.Commit && f.SpecHash == hash:
			st.Phase = PhaseHeld
			st.Held = &Hold{Revision: f.Revision, Reason: f.Reason, At: f.At}
		case busy[svc.Name] || others > 0 || current != svc.Replicas || st.Progress.Passing < svc.Replicas:
			st.Phase = PhaseRollingOut
			st.Progress.Started = started
		default:
			st.Phase = PhaseConverged
		}
		out = append(out, st)
	}
	for _, name := range slices.Sorted(maps.Keys(byService)) {
		vms := byService[name]
		out = append(out, ServiceStatus{Name: name, Revision: rev.Commit, Phase: PhasePruning, Versions: versionCounts(vms, passing)})
	}
	return out
}

// versionCounts counts vms and those passing per version, in the order versions were
// first created.
func versionCounts(vms []hypervisor.VM, passing map[string]bool) []VersionCount {
	sorted := slices.Clone(vms)
	slices.SortStableFunc(sorted, func(a, b hypervisor.VM) int { return a.Meta.Created.Compare(b.Meta.Created) })
	var out []VersionCount
	index := map[string]int{}
	for _, vm := range sorted {
		i, ok := index[vm.Meta.Version]
		if !ok {
			i = len(out)
			index[vm.Meta.Version] = i
			out = append(out, VersionCount{Version: vm.Meta.Version})
		}
		out[i].Total++
		if passing[vm.Name] {
			out[i].Passing++
		}
	}
	return out
}
