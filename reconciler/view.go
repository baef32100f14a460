package reconciler

import (
	"context"
	"time"
)

// View is the read-only side of a running Drover that operators look through: the
// HTTP API, the dashboard, metrics and notifications read it and nothing else. The
// reconciler never imports what reads it.
type View interface {
	// FleetStatus is the fleet as of now: desired against actual, per service.
	FleetStatus(ctx context.Context) (FleetStatus, error)
	// History is the fleet's stored events, oldest first, the last limit of them (all
	// kept when limit <= 0); service "" means every service.
	History(ctx context.Context, service string, limit int) ([]Event, error)
	// Subscribe delivers events as they happen until cancel is called. A subscriber that
	// does not keep up loses events; it never slows a pass.
	Subscribe() (events <-chan Event, cancel func())
}

// Control is what an operator may order a running Drover to do. Each is kept in Consul
// where it must outlive the process (suspension), so a standby honours it too.
type Control interface {
	// Suspend leaves a service exactly as it is (no rollout, repair, chaos or prune)
	// until Resume.
	Suspend(ctx context.Context, service, reason string) error
	Resume(ctx context.Context, service string) error
	// Retry releases a held (failed) revision of a service, so the next pass tries it
	// again.
	Retry(ctx context.Context, service string) error
	// Reconcile runs a pass now (fetching first) instead of at the next interval.
	Reconcile(ctx context.Context) error
}

// EventKind says what happened.
type EventKind string

// Event kinds.
const (
	EventRolloutStarted   EventKind = "rollout_started"
	EventRolloutSucceeded EventKind = "rollout_succeeded"
	EventRolloutFailed    EventKind = "rollout_failed"
	EventRolledBack       EventKind = "rolled_back"
	EventVMCreated        EventKind = "vm_created"
	EventVMRetired        EventKind = "vm_retired"
	EventDriftRepaired    EventKind = "drift_repaired"
	EventChaos            EventKind = "chaos"
	EventRevisionHeld     EventKind = "revision_held"
	EventRevisionReleased EventKind = "revision_released"
	EventLeaderAcquired   EventKind = "leader_acquired"
	EventLeaderLost       EventKind = "leader_lost"
	EventSuspended        EventKind = "suspended"
	EventResumed          EventKind = "resumed"
)

// Event is one thing that happened to the fleet, as stored (a bounded ring per fleet in
// Consul KV) and as delivered to subscribers. Reasons are redacted before they get here.
type Event struct {
	// Seq orders a fleet's events; gap-free across leaders.
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Kind     EventKind `json:"kind"`
	Fleet    string    `json:"fleet"`
	Service  string    `json:"service,omitempty"`
	Revision string    `json:"revision,omitempty"`
	Version  string    `json:"version,omitempty"`
	VMs      []string  `json:"vms,omitempty"`
	Reason   string    `json:"reason,omitempty"`
}

// FleetStatus is the fleet at a glance.
type FleetStatus struct {
	Fleet string `json:"fleet"`
	// Revision is the full commit SHA acted on; Ref is what is tracked ("branch:main",
	// "semver:^1.2"), Tag the tag it resolved through, if any.
	Revision  string          `json:"revision"`
	Ref       string          `json:"ref,omitempty"`
	Tag       string          `json:"tag,omitempty"`
	Leader    bool            `json:"leader"`
	LastFetch time.Time       `json:"last_fetch,omitzero"`
	LastPass  time.Time       `json:"last_pass,omitzero"`
	Error     string          `json:"error,omitempty"`
	Services  []ServiceStatus `json:"services"`
}

// ServiceStatus is one service: what the commit wants against what runs.
type ServiceStatus struct {
	Name     string `json:"name"`
	Version  string `json:"version"` // desired
	Revision string `json:"revision"`
	Replicas int    `json:"replicas"` // desired
	// Versions counts the running instances per version, passing and total.
	Versions []VersionCount `json:"versions"`
	// Phase is "converged", "rolling-out", "held", "suspended" or "pruning"; "unknown"
	// where no desired revision is known (a standby).
	Phase    string   `json:"phase"`
	Progress Progress `json:"progress"`
	// Held is the failed revision kept from being retried, nil when none.
	Held      *Hold      `json:"held,omitempty"`
	Suspended *Suspended `json:"suspended,omitempty"`
	VMs       []VMStatus `json:"vms"`
}

// VersionCount is how many instances of one version run and pass.
type VersionCount struct {
	Version string `json:"version"`
	Passing int    `json:"passing"`
	Total   int    `json:"total"`
}

// Progress is a rollout's: new VMs passing out of wanted, since when.
type Progress struct {
	Passing int       `json:"passing"`
	Wanted  int       `json:"wanted"`
	Started time.Time `json:"started,omitzero"`
}

// Hold is a failed revision and why.
type Hold struct {
	Revision string    `json:"revision"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

// Suspended says when and why a service was suspended.
type Suspended struct {
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// VMStatus is one managed VM.
type VMStatus struct {
	Name     string    `json:"name"`
	Version  string    `json:"version"`
	Revision string    `json:"revision"`
	State    string    `json:"state"`
	Address  string    `json:"address,omitempty"` // host:port as registered
	Created  time.Time `json:"created"`
	Health   string    `json:"health"` // passing | warning | critical | maintenance | unregistered
}
