package reconciler

import "time"

// What the reconciler reports for metrics. Both are optional (nil reports nothing); cmd
// hands the server's *Metrics to both. Their methods must not block: they are called
// on a pass's and a rollout's way.

// PassMetrics is told of each pass the Runner starts.
type PassMetrics interface {
	// ObservePass: d is how long Reconciler.Start took (observe, plan, start the
	// rollouts; not the rollouts themselves). err is the pass's own failure (nothing
	// could be observed or planned) or what it reported (a rollout that failed, an
	// orphan it could not deregister), nil when it reported only held revisions: a held
	// revision is a settled state, not a failing pass.
	ObservePass(d time.Duration, err error)
}

// GateMetrics is told of each health gate that ended with a verdict.
type GateMetrics interface {
	// ObserveGateWait: a rollout step's new VMs of service waited d at the health gate
	// (from their creation) and passed it, or did not within healthy_deadline. A gate
	// cut short (a signal, a lost leadership, Consul unreachable) is no verdict and is
	// not reported.
	ObserveGateWait(service string, d time.Duration, passed bool)
}
