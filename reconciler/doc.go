// Package reconciler is Drover's brain. A pass is level-based: it reads the desired fleet
// (a commit from the git source), the managed VMs (from a hypervisor driver) and their
// Consul instances, diffs them per service, and executes the service's update strategy,
// gated on Consul health. It acts on the state it reads, never on remembered events, so a
// pass after a restart simply continues from whatever exists.
//
// The package owns the small interfaces it needs from the others (Hypervisor, Registry,
// Images, Source) and translates between their types: sources, hypervisor and discovery
// never import each other.
package reconciler
