package reconciler

import (
	"github.com/drover-dev/drover/sources"
)

// The update strategies as arithmetic: given what runs now, how many VMs to create and
// how many predecessors to retire in this step. A pass takes one step, acts, and the
// next pass takes the next from whatever then exists, so an interrupted rollout resumes
// from the counts alone, with nothing remembered.

// stepInput is what a strategy decides from: the service's bounds and the counts of one
// service's alive VMs. Counts leave out VMs already on their way out (extras beyond
// replicas being retired, VMs not running): those neither serve nor count toward a bound.
type stepInput struct {
	// Replicas, MaxSurge, MaxUnavailable and Canary come from the fleet file.
	Replicas, MaxSurge, MaxUnavailable, Canary int
	// Current are alive VMs of the desired spec, CurrentPassing those of them Consul
	// sees passing.
	Current, CurrentPassing int
	// Old are alive predecessors (another spec), OldPassing those of them passing.
	Old, OldPassing int
}

// step is one move of a rollout.
type step struct {
	// Create is how many VMs of the desired spec to boot now.
	Create int
	// RetireOld is how many predecessors to drain and destroy now: those not passing
	// before any passing one, since only passing VMs count toward the floor of
	// replicas - max_unavailable.
	RetireOld int
	// RetireAfterGate says the RetireOld predecessors go only after every current VM,
	// those created in this step included, passes for min_healthy_time. Without it they
	// may go at once, even while the created VMs boot: the arithmetic already counted
	// the created VMs as present and not passing.
	RetireAfterGate bool
}

// inputFor fills the bounds of a stepInput from a service; the caller adds the counts.
func inputFor(svc sources.Service) stepInput {
	return stepInput{
		Replicas:       svc.Replicas,
		MaxSurge:       svc.Update.MaxSurge,
		MaxUnavailable: svc.Update.MaxUnavailable,
		Canary:         svc.Update.Canary,
	}
}

// strategyStep dispatches on the service's update strategy; an unknown strategy (the
// parser admits none) falls back to blue-green, the default.
func strategyStep(strategy string, in stepInput) step {
	switch strategy {
	case sources.StrategyRolling:
		return rollingStep(in)
	case sources.StrategyCanary:
		return canaryStep(in)
	default:
		return blueGreenStep(in)
	}
}

// blueGreenStep boots every missing VM at once and retires every predecessor once all
// current VMs pass. Capacity never drops, and the fleet briefly doubles.
func blueGreenStep(in stepInput) step {
	return step{
		Create:          max(0, in.Replicas-in.Current),
		RetireOld:       max(0, in.Old),
		RetireAfterGate: true,
	}
}

// canaryStep boots Canary new VMs first and nothing else; once every one of them passes,
// it continues as blue-green. While the canaries are still on their gate, it returns a
// step that does nothing: the executor waits for the current VMs, and the next step
// goes on from there. A failing canary fails the rollout before the rest exist.
func canaryStep(in stepInput) step {
	canary := max(in.Canary, 1)
	if in.Replicas > 0 {
		canary = min(canary, in.Replicas)
	}
	switch {
	case in.Replicas == 0:
		// Nothing to try out: scaling to zero is blue-green's retire-everything.
	case in.Current < canary:
		return step{Create: canary - in.Current, RetireAfterGate: true}
	case in.CurrentPassing < in.Current && in.Current < in.Replicas:
		// The canaries (or the first of the rest, after a restart) have not passed yet.
		return step{RetireAfterGate: true}
	}
	return blueGreenStep(in)
}

// rollingStep moves a rollout within two bounds, as Nomad's update block and EC2
// instance refresh do:
//
//   - at most Replicas + MaxSurge VMs exist at any instant, counting those created in
//     this step and those being retired until they are gone;
//   - at least Replicas - MaxUnavailable VMs pass at any instant, counting a VM as not
//     passing from the moment its retirement begins, and a created one only once Consul
//     sees it pass.
//
// Create fills the room under the first bound, never beyond the missing replicas.
// RetireOld takes every failing predecessor (retiring one costs no passing instance) and
// as many passing ones as the second bound allows; when the desired spec already has
// all its replicas the same rule retires whatever predecessors remain. Because Create
// counts the predecessors being retired as still present, and RetireOld counts the
// created VMs as not passing, the two may run at the same time. With MaxSurge and
// MaxUnavailable not both 0 (the parser's rule), every step until the end either
// creates or retires, once the VMs created earlier pass: the rollout cannot stall.
func rollingStep(in stepInput) step {
	// Passing counts come from Consul and VM counts from the hypervisor, read at
	// different instants: a passing count above its VM count must not retire VMs that
	// do not exist.
	in.CurrentPassing = min(max(in.CurrentPassing, 0), in.Current)
	in.OldPassing = min(max(in.OldPassing, 0), in.Old)
	create := max(0, min(in.Replicas-in.Current, in.Replicas+in.MaxSurge-(in.Current+in.Old)))
	failingOld := max(0, in.Old-in.OldPassing)
	floor := in.Replicas - in.MaxUnavailable
	spare := in.CurrentPassing + in.OldPassing - floor
	passingOld := max(0, min(in.OldPassing, spare))
	return step{
		Create:    create,
		RetireOld: failingOld + passingOld,
	}
}
