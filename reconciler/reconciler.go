package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/internal/redact"
	"github.com/drover-dev/drover/sources"
)

// Config wires a Reconciler to its providers.
type Config struct {
	// Fleet is this Drover's fleet. Its VMs and Consul instances carry it, and it
	// manages only those: VMs and registrations of other fleets on the same host and
	// agent are left alone. Empty is a fleet too (the VMs labelled with none).
	Fleet      string
	Hypervisor Hypervisor
	// Registrar and Health are service discovery (one *discovery.Client serves both).
	Registrar Registrar
	Health    Health
	Images    Images
	// ImageGC, optional, removes cached images no VM and no recent revision uses after a
	// pass that converged; ImageGCGrace is how long an unused image is kept (default
	// 24h), so a rollback to yesterday's revision does not download again.
	ImageGC      ImageCollector
	ImageGCGrace time.Duration
	// History, optional, lets a failed rollout restore its predecessors' spec, and image
	// GC keep the images running VMs were created from.
	History History
	// Failures, optional, keeps the failed revisions across restarts and leaders (under
	// drover/fleets/<fleet>/failed/ in Consul KV). Without it they live in memory only.
	Failures FailureStore
	// Reservations, needed by services with static addressing (network.addresses),
	// holds each allocated address under drover/addresses/<ip> in Consul KV.
	Reservations AddressReservations
	Log          *slog.Logger
	// Now and Rand make time and VM name suffixes controllable in tests.
	Now  func() time.Time
	Rand *rand.Rand
	// ProbeInterval is how often a booting VM's check is run by Drover itself, to notice
	// it healthy sooner than Consul's interval allows. Default 100ms.
	ProbeInterval time.Duration
	// PruneDrain and PruneShutdownTimeout apply to services removed from the fleet, whose
	// own update settings are gone with them. Defaults 5s and 30s.
	PruneDrain           time.Duration
	PruneShutdownTimeout time.Duration
	// Hook, when set, is called at each named point of a pass (see the Point constants).
	// Fault-injection tests use it to kill Drover at exact places of a rollout.
	Hook func(point string)
	// ReplaceUnhealthyAfter is how long a running VM may fail its check (after its
	// healthy_deadline) before it is replaced. Zero never replaces. Default 5m.
	ReplaceUnhealthyAfter time.Duration
	// Chaos enables the fleet file's chaos blocks (burn-and-rebuild). `drover run`
	// enables it; `--once` and `plan` do not, since a deploy must not kill what it made.
	Chaos bool
	// OpTimeout bounds each driver or registry call that must finish even when the pass is
	// being cancelled (creating, destroying, deregistering), so a signal never leaves a
	// half-made VM behind. Default 2m.
	OpTimeout time.Duration
	// Budget bounds what a commit may ask of this host; a zero field takes
	// DefaultBudget's value.
	Budget Budget
	// MaxParallelCreates bounds the VM creates in flight at once, across services: each
	// copies an image and starts a QEMU. Default 4.
	MaxParallelCreates int
	// Events, optional, keeps the fleet's events in a ring of the last EventsKept
	// (default 1000) under drover/fleets/<fleet>/events/ in Consul KV, shared by every
	// Drover of the fleet. Without it they are kept in memory only.
	Events     EventStore
	EventsKept int
	// Secrets are masked in event reasons and status (the credentials of the repository
	// URL, a token read from a file, say). It grows while Drover runs; nil holds none.
	Secrets *redact.Set
	// Metrics, optional, is told how long each rollout's new VMs waited at the health
	// gate and whether they passed it.
	Metrics GateMetrics
}

// Reconciler runs passes. It keeps only what cannot be read back from the world: the
// rollouts that failed, so a bad revision is not retried until a new commit arrives
// (in Consul KV when it has a FailureStore, so they outlive the process), and the
// rollouts running in the background.
type Reconciler struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	failed map[string]failure // by service; with a FailureStore, only those not yet recorded there
	// failingSince is when each instance was first seen not passing, since it last
	// passed. In memory only: a restarted Drover starts the clocks again, which errs on
	// the side of not replacing.
	failingSince map[string]time.Time
	passed       map[string]bool // instances seen passing at least once
	// started and lastBurn schedule chaos: no burn before a service's interval has
	// passed since this Drover started, then one per interval.
	started  time.Time
	lastBurn map[string]time.Time
	randMu   sync.Mutex
	// otherFleets is the last logged summary of other fleets' VMs.
	otherFleets string

	work    *inflight     // rollouts running in the background, by service
	creates chan struct{} // semaphore of MaxParallelCreates
	gc      imageGC
	events  events
	// suspended are the suspended services without a FailureStore to keep them in.
	suspended map[string]Suspended
	// announced is the spec each service's running rollout was announced for
	// (rollout_started), so a multi-step rollout announces itself once.
	announced map[string]string
	// addresses serialises this Drover's static address allocations.
	addresses addressBook
}

// New returns a Reconciler.
func New(cfg Config) (*Reconciler, error) {
	if cfg.Hypervisor == nil || cfg.Registrar == nil || cfg.Health == nil || cfg.Images == nil {
		return nil, errors.New("reconciler: hypervisor, registrar, health and images are required")
	}
	if err := ValidFleet(cfg.Fleet); cfg.Fleet != "" && err != nil {
		return nil, fmt.Errorf("reconciler: %w", err)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x64726f766572))
	}
	if cfg.Hook == nil {
		cfg.Hook = func(string) {}
	}
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = 100 * time.Millisecond
	}
	if cfg.PruneDrain == 0 {
		cfg.PruneDrain = 5 * time.Second
	}
	if cfg.PruneShutdownTimeout == 0 {
		cfg.PruneShutdownTimeout = 30 * time.Second
	}
	if cfg.ReplaceUnhealthyAfter == 0 {
		cfg.ReplaceUnhealthyAfter = 5 * time.Minute
	}
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = 2 * time.Minute
	}
	if cfg.ImageGCGrace == 0 {
		cfg.ImageGCGrace = 24 * time.Hour
	}
	if cfg.MaxParallelCreates <= 0 {
		cfg.MaxParallelCreates = 4
	}
	if cfg.EventsKept <= 0 {
		cfg.EventsKept = DefaultEventsKept
	}
	cfg.Budget = cfg.Budget.orDefault(DefaultBudget())
	return &Reconciler{cfg: cfg, log: cfg.Log, failed: map[string]failure{}, failingSince: map[string]time.Time{}, passed: map[string]bool{},
		started: cfg.Now(), lastBurn: map[string]time.Time{}, work: newInflight(),
		creates: make(chan struct{}, cfg.MaxParallelCreates), gc: imageGC{revisions: map[string]*sources.Fleet{}},
		suspended: map[string]Suspended{}, announced: map[string]string{}}, nil
}

// RolloutError is a rollout that failed its health gate (or could not create its VMs).
// The predecessors keep serving; the revision is held until a new commit arrives.
type RolloutError struct {
	Service    string
	Revision   string
	RolledBack bool
	Err        error
}

func (e *RolloutError) Error() string {
	verb := "failed"
	if e.RolledBack {
		verb = "failed and was rolled back"
	}
	return fmt.Sprintf("rollout of %s at %s %s: %v", e.Service, shortRev(e.Revision), verb, e.Err)
}

func (e *RolloutError) Unwrap() error { return e.Err }

// HeldError reports a service whose revision already failed and is not retried.
type HeldError struct {
	Service string
	Reason  string
}

func (e *HeldError) Error() string { return fmt.Sprintf("service %s held: %s", e.Service, e.Reason) }

// Result is the outcome of one pass.
type Result struct {
	Plan Plan
	// Changed: the pass acted, or started a rollout. A pass that changed nothing, with
	// nothing in progress, found the fleet matching.
	Changed bool
	// InProgress are the services whose rollout runs in the background (started by this
	// pass or an earlier one); the pass did not act on them.
	InProgress []string
	// Err joins every service's error (RolloutError, HeldError or an operational error),
	// with those of background rollouts that ended since the previous pass.
	Err error
}

// Plan computes what a pass over rev would do, changing nothing.
func (r *Reconciler) Plan(ctx context.Context, rev sources.Revision) (Plan, error) {
	if err := r.Admit(rev); err != nil {
		return Plan{}, err
	}
	p, _, err := r.plan(ctx, rev)
	if err != nil {
		return Plan{}, err
	}
	p.inProgress(r.work.busy())
	return p, nil
}

// plan observes and plans, returning what it observed too.
func (r *Reconciler) plan(ctx context.Context, rev sources.Revision) (Plan, Observed, error) {
	obs, err := r.observe(ctx)
	if err != nil {
		return Plan{}, Observed{}, err
	}
	now := r.cfg.Now()
	failing, passed := r.trackHealth(obs.Instances, now)
	failed, err := r.failures(ctx)
	if err != nil {
		return Plan{}, Observed{}, err
	}
	suspended, err := r.suspensions(ctx)
	if err != nil {
		return Plan{}, Observed{}, err
	}
	fleet, restoring := r.rollbackTargets(ctx, rev, obs, failed)
	return plan(planInput{
		Revision: rev.Commit, Fleet: fleet, Obs: obs, Failed: failed, Now: now,
		FailingSince: failing, Passed: passed, ReplaceUnhealthyAfter: r.cfg.ReplaceUnhealthyAfter,
		Restoring: restoring, Suspended: suspended,
	}), obs, nil
}

// rollbackTargets returns the fleet to plan against: rev's, except that a service whose
// revision failed (and is held) targets the spec its newest surviving predecessor was
// created from, read from that VM's revision. That is what a rollback means for
// strategies that retire predecessors before the new version has proven itself.
func (r *Reconciler) rollbackTargets(ctx context.Context, rev sources.Revision, obs Observed, failed map[string]failure) (*sources.Fleet, map[string]string) {
	if r.cfg.History == nil || len(failed) == 0 {
		return rev.Fleet, nil
	}
	out := &sources.Fleet{Services: slices.Clone(rev.Fleet.Services)}
	restoring := map[string]string{}
	for i, svc := range out.Services {
		f, ok := failed[svc.Name]
		hash := SpecHash(svc)
		if !ok || f.Revision != rev.Commit || f.SpecHash != hash {
			continue
		}
		var newest *hypervisor.VM
		for j, vm := range obs.VMs {
			if vm.Meta.Service == svc.Name && vm.Meta.SpecHash != hash && alive(vm) &&
				(newest == nil || vm.Meta.Created.After(newest.Meta.Created)) {
				newest = &obs.VMs[j]
			}
		}
		if newest == nil {
			continue
		}
		old, err := r.cfg.History.Fleet(ctx, newest.Meta.Revision)
		if err != nil {
			r.log.Warn("cannot read the predecessors' revision; not restoring it", "service", svc.Name, "revision", shortRev(newest.Meta.Revision), "err", err)
			continue
		}
		prev, ok := old.Service(svc.Name)
		if !ok || SpecHash(prev) != newest.Meta.SpecHash {
			continue
		}
		out.Services[i] = prev
		restoring[svc.Name] = fmt.Sprintf("revision %s failed for this spec: %s; restoring version %s from revision %s (waiting for a new commit)",
			shortRev(rev.Commit), f.Reason, prev.Version, shortRev(newest.Meta.Revision))
	}
	return out, restoring
}
