package reconciler

import (
	"context"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/sources"
)

// Hypervisor is what a pass needs from a VM driver. Sweep removes leftovers of VMs that
// no longer exist (an overlay made just before a kill -9, say); a pass sweeps first.
type Hypervisor interface {
	Create(ctx context.Context, spec hypervisor.Spec) (hypervisor.VM, error)
	List(ctx context.Context) ([]hypervisor.VM, error)
	Shutdown(ctx context.Context, name string, timeout time.Duration) error
	Destroy(ctx context.Context, name string) error
	Sweep(ctx context.Context) ([]string, error)
}

// Registrar changes what service discovery announces: every call mutates, and runs under
// the leadership fence.
type Registrar interface {
	Register(ctx context.Context, reg discovery.Registration) error
	Deregister(ctx context.Context, id string) error
	SetMaintenance(ctx context.Context, id string, on bool, reason string) error
}

// Health reads service discovery: reachability, the fleet's instances and their checks.
type Health interface {
	Ping(ctx context.Context) error
	Instances(ctx context.Context, tag string) ([]discovery.Instance, error)
	// ServiceInstances lists every instance of a Consul service, whoever registered it:
	// a service name owned by someone else is refused.
	ServiceInstances(ctx context.Context, service string) ([]discovery.Instance, error)
	WaitPassing(ctx context.Context, service string, ids []string, hold time.Duration) error
	// Probe runs an instance's check once from here (Consul's semantics).
	Probe(ctx context.Context, reg discovery.Registration) error
}

// FailureStore is a small durable store (Consul KV) for what a pass learns and the world
// cannot tell again: which revisions failed, and which services an operator suspended.
// With it, a restarted Drover, or a standby taking over, does not try a failed revision
// again nor touch a suspended service. KVDelete is an operator's retry or resume.
type FailureStore interface {
	KVPut(ctx context.Context, key string, value []byte) error
	KVList(ctx context.Context, prefix string) (map[string][]byte, error)
	KVDelete(ctx context.Context, key string) error
}

// EventStore keeps the fleet's events in a bounded ring (Consul KV), shared by every
// Drover of the fleet, so a restarted one or a standby taking over keeps the history.
type EventStore interface {
	RingAppend(ctx context.Context, ring discovery.Ring, encode func(seq uint64) ([]byte, error)) (uint64, error)
	RingRead(ctx context.Context, ring discovery.Ring) (head uint64, values [][]byte, err error)
}

// Images resolves a golden image to a verified local file.
type Images interface {
	Get(ctx context.Context, a sources.Artifact) (string, error)
}

// ImageCollector removes cached images no VM and no recent revision uses. A pass that
// converged calls it with the digests still in use.
type ImageCollector interface {
	Collect(ctx context.Context, inUse func(digest string) bool, grace time.Duration) ([]string, error)
}

// History reads the fleet at an earlier commit. With it, a service whose revision failed
// is brought back to the spec its surviving predecessors were created from, so a
// rollback restores capacity even under strategies that retire predecessors early.
type History interface {
	Fleet(ctx context.Context, commit string) (*sources.Fleet, error)
}

// Source yields the desired state: the fleet at the tracked commit.
type Source interface {
	Read(ctx context.Context) (sources.Revision, error)
}
