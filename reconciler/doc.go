// Package reconciler is Drover's brain. A pass is level-based: it reads the desired fleet
// (a commit from the git source), the managed VMs (from a hypervisor driver) and their
// Consul instances, diffs them per service, and starts the service's update strategy,
// gated on Consul health, in the background: one service's long drain or health gate
// never holds back the next commit's changes to the others. It acts on the state it
// reads, never on remembered events, so a pass after a restart simply continues from
// whatever exists. A commit that would need more of the host than its Budget is refused
// before anything changes, and only a leader acts (Fence).
//
// What happens is recorded as Events, kept per fleet in a bounded ring in Consul and
// delivered live; operators look through a View (status, history) and steer through a
// Control (suspend, resume, retry, reconcile), both implemented by Operator. A suspended
// service is left exactly as it is by every pass, on every Drover of the fleet.
//
// The package owns the small interfaces it needs from the others (Hypervisor, Registrar,
// Health, FailureStore, Images, Source) and translates between their types: sources,
// hypervisor and discovery never import each other.
package reconciler
