package reconciler

// Points of a pass where Config.Hook is called. Fault-injection tests kill Drover at
// each of them (and at random instants) to prove a restart converges without leaks.
const (
	PointObserved           = "observed"            // actual state read, nothing done yet
	PointCreated            = "created"             // a VM exists, not yet registered in Consul
	PointRegistered         = "registered"          // a new VM is registered (passing once it answered)
	PointGateWaiting        = "gate-waiting"        // waiting for the new VMs to pass
	PointProbePassed        = "probe-passed"        // a new VM answered its check, not yet registered
	PointGatePassed         = "gate-passed"         // every current VM passes; predecessors not yet drained
	PointMaintenance        = "maintenance"         // a predecessor is in maintenance
	PointDrained            = "drained"             // the drain wait is over, VMs still running
	PointShutdown           = "shutdown"            // a predecessor is shut off, not destroyed
	PointDestroyed          = "destroyed"           // a VM is destroyed, still registered
	PointDeregistered       = "deregistered"        // a VM is destroyed and deregistered
	PointRollback           = "rollback"            // a rollout failed; rollback starts
	PointOrphanDeregistered = "orphan-deregistered" // a registration without VM was removed
)

// PointAddressReserved: a static address is reserved in Consul KV, its VM not yet
// created. Not in Points: only a service with static addressing reaches it, and the
// network e2e test kills Drover there.
const PointAddressReserved = "address-reserved"

// Points lists every hook point, for tests that visit them all.
var Points = []string{
	PointObserved, PointCreated, PointRegistered, PointGateWaiting, PointProbePassed,
	PointGatePassed, PointMaintenance, PointDrained, PointShutdown, PointDestroyed,
	PointDeregistered, PointRollback, PointOrphanDeregistered,
}
