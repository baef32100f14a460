package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/sources"
)

// Config wires a Reconciler to its providers.
type Config struct {
	// Fleet is this Drover's fleet. Its VMs and Consul instances carry it, and it
	// manages only those: VMs and registrations of other fleets on the same host and
	// agent are left alone. Empty is a fleet too (the VMs labelled with none).
	Fleet      string
	Hypervisor Hypervisor
	Registry   Registry
	Images     Images
	// History, optional, lets a failed rollout restore its predecessors' spec.
	History History
	// Memory, optional, keeps the failed revisions across restarts and leaders (under
	// drover/fleets/<fleet>/failed/ in Consul KV). Without it they live in memory only.
	Memory Memory
	Log    *slog.Logger
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
}

// Reconciler runs passes. It keeps only what cannot be read back from the world: the
// rollouts that failed, so a bad revision is not retried until a new commit arrives
// (in Consul KV when it has a Memory, so they outlive the process).
type Reconciler struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	failed map[string]failure // by service; with a Memory, only those not yet recorded there
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
}

// New returns a Reconciler.
func New(cfg Config) (*Reconciler, error) {
	if cfg.Hypervisor == nil || cfg.Registry == nil || cfg.Images == nil {
		return nil, errors.New("reconciler: hypervisor, registry and images are required")
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
	return &Reconciler{cfg: cfg, log: cfg.Log, failed: map[string]failure{}, failingSince: map[string]time.Time{}, passed: map[string]bool{},
		started: cfg.Now(), lastBurn: map[string]time.Time{}}, nil
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
	// Changed: the pass acted. A pass that changed nothing found the fleet matching.
	Changed bool
	// Err joins every service's error (RolloutError, HeldError or an operational error).
	Err error
}

// Observe reads the actual state. It fails, changing nothing, when either provider is
// unreachable: acting on a partial view could destroy what is serving.
func (r *Reconciler) Observe(ctx context.Context) (Observed, error) {
	if err := r.cfg.Registry.Ping(ctx); err != nil {
		return Observed{}, fmt.Errorf("observe: consul: %w", err)
	}
	if sw, ok := r.cfg.Hypervisor.(Sweeper); ok {
		removed, err := sw.Sweep(ctx)
		if err != nil {
			r.log.Warn("sweeping leftovers of gone VMs", "err", err)
		}
		for _, path := range removed {
			r.log.Info("removed leftover of a VM that no longer exists", "path", path, "event", "repair")
		}
	}
	all, err := r.cfg.Hypervisor.List(ctx)
	if err != nil {
		return Observed{}, fmt.Errorf("observe: list vms: %w", err)
	}
	allInstances, err := r.cfg.Registry.Instances(ctx, Tag)
	if err != nil {
		return Observed{}, fmt.Errorf("observe: consul instances: %w", err)
	}
	var obs Observed
	others := map[string]int{} // VMs of other fleets, by fleet
	for _, vm := range all {
		if vm.Meta.Fleet != r.cfg.Fleet {
			others[vm.Meta.Fleet]++
			continue
		}
		obs.VMs = append(obs.VMs, vm)
	}
	for _, in := range allInstances {
		if in.Meta[MetaFleet] == r.cfg.Fleet {
			obs.Instances = append(obs.Instances, in)
		}
	}
	r.noteOtherFleets(others)
	r.cfg.Hook(PointObserved)
	return obs, nil
}

// noteOtherFleets logs the VMs of other fleets this Drover leaves alone whenever they
// change: expected when several fleets share a host, a sign of a changed --fleet (or
// repository) when they are the VMs this fleet used to run.
func (r *Reconciler) noteOtherFleets(others map[string]int) {
	parts := make([]string, 0, len(others))
	for _, f := range slices.Sorted(maps.Keys(others)) {
		name := f
		if name == "" {
			name = "(none)"
		}
		parts = append(parts, fmt.Sprintf("%s=%d", name, others[f]))
	}
	summary := strings.Join(parts, " ")
	r.mu.Lock()
	changed := summary != r.otherFleets
	r.otherFleets = summary
	r.mu.Unlock()
	if changed && summary != "" {
		r.log.Info("leaving alone the VMs of other fleets on this host", "fleet", r.cfg.Fleet, "vms_by_fleet", summary)
	}
}

// Plan computes what a pass over rev would do, changing nothing.
func (r *Reconciler) Plan(ctx context.Context, rev sources.Revision) (Plan, error) {
	obs, err := r.Observe(ctx)
	if err != nil {
		return Plan{}, err
	}
	now := r.cfg.Now()
	failing, passed := r.trackHealth(obs.Instances, now)
	failed, err := r.failures(ctx)
	if err != nil {
		return Plan{}, err
	}
	fleet, restoring := r.rollbackTargets(ctx, rev, obs, failed)
	return plan(planInput{
		Revision: rev.Commit, Fleet: fleet, Obs: obs, Failed: failed, Now: now,
		FailingSince: failing, Passed: passed, ReplaceUnhealthyAfter: r.cfg.ReplaceUnhealthyAfter,
		Restoring: restoring,
	}), nil
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

// Pass reads the world, diffs it against rev and acts. Services are handled in parallel;
// one service's failure never stops another's rollout.
func (r *Reconciler) Pass(ctx context.Context, rev sources.Revision) (Result, error) {
	p, err := r.Plan(ctx, rev)
	if err != nil {
		return Result{}, err
	}
	res := Result{Plan: p, Changed: !p.Noop()}
	log := r.log.With("revision", shortRev(rev.Commit))

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, sp := range p.Services {
		if sp.Noop() {
			if sp.Held != "" {
				errs = append(errs, &HeldError{Service: sp.Service, Reason: sp.Held})
			}
			continue
		}
		svc, _ := p.fleet.Service(sp.Service)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.execute(ctx, log.With("service", sp.Service), rev.Commit, svc, sp); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if r.cfg.Chaos {
		burnt, err := r.chaos(ctx, log, p)
		res.Changed = res.Changed || burnt
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, id := range p.Orphans {
		err := r.finish(ctx, func(ctx context.Context) error { return r.cfg.Registry.Deregister(ctx, id) })
		if err != nil {
			errs = append(errs, fmt.Errorf("deregister orphan %s: %w", id, err))
			continue
		}
		r.cfg.Hook(PointOrphanDeregistered)
		log.Info("deregistered instance whose VM is gone", "vm", id)
	}
	res.Err = errors.Join(errs...)
	return res, nil
}

// failures are the failed rollouts by service: with a Memory, those any Drover of the
// fleet recorded there, plus any this one could not record; without, those it saw.
func (r *Reconciler) failures(ctx context.Context) (map[string]failure, error) {
	r.mu.Lock()
	out := maps.Clone(r.failed)
	r.mu.Unlock()
	if r.cfg.Memory == nil {
		return out, nil
	}
	prefix := r.failuresPrefix()
	stored, err := r.cfg.Memory.KVList(ctx, prefix)
	if err != nil {
		// Planning without them could retry a revision that already failed.
		return nil, fmt.Errorf("read failed revisions: %w", err)
	}
	for key, raw := range stored {
		var f failure
		if err := json.Unmarshal(raw, &f); err != nil {
			r.log.Warn("ignoring unreadable failed-revision record", "key", key, "err", err)
			continue
		}
		svc := strings.TrimPrefix(key, prefix)
		if cur, ok := out[svc]; !ok || f.At.After(cur.At) {
			out[svc] = f
		}
	}
	return out, nil
}

// failuresPrefix is where the fleet's failed rollouts are kept, one key per service.
func (r *Reconciler) failuresPrefix() string {
	fleet := r.cfg.Fleet
	if fleet == "" {
		fleet = "-" // never a valid fleet name
	}
	return "drover/fleets/" + fleet + "/failed/"
}

// trackHealth updates and returns since when each instance has been failing its check,
// and which instances have passed at least once. Instances in maintenance are being
// drained by Drover, not failing.
func (r *Reconciler) trackHealth(instances []discovery.Instance, now time.Time) (map[string]time.Time, map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, in := range instances {
		seen[in.ID] = true
		switch in.Status {
		case discovery.StatusCritical, discovery.StatusWarning:
			if _, ok := r.failingSince[in.ID]; !ok {
				r.failingSince[in.ID] = now
			}
		case discovery.StatusPassing:
			r.passed[in.ID] = true
			delete(r.failingSince, in.ID)
		default:
			delete(r.failingSince, in.ID)
		}
	}
	passed := make(map[string]bool, len(r.passed))
	for id := range r.passed {
		if !seen[id] {
			delete(r.passed, id)
			continue
		}
		passed[id] = true
	}
	out := make(map[string]time.Time, len(r.failingSince))
	for id, since := range r.failingSince {
		if !seen[id] {
			delete(r.failingSince, id)
			continue
		}
		out[id] = since
	}
	return out, passed
}

// recordFailure remembers that service's rollout failed, in memory and in the Memory.
// A record that cannot be written is logged: this Drover still holds the revision,
// but a restarted one would try it once more.
func (r *Reconciler) recordFailure(ctx context.Context, service string, f failure) {
	f.At = r.cfg.Now().UTC()
	r.mu.Lock()
	r.failed[service] = f
	r.mu.Unlock()
	if r.cfg.Memory == nil {
		return
	}
	raw, err := json.Marshal(f)
	if err == nil {
		err = r.finish(ctx, func(ctx context.Context) error {
			return r.cfg.Memory.KVPut(ctx, r.failuresPrefix()+service, raw)
		})
	}
	if err != nil {
		r.log.Warn("could not record the failed revision in consul; a restarted drover will try it again", "service", service, "revision", shortRev(f.Revision), "err", err)
		return
	}
	// Consul has it now and is the record from here: deleting the key there lets the
	// revision be tried again without a new commit.
	r.mu.Lock()
	if r.failed[service].At.Equal(f.At) {
		delete(r.failed, service)
	}
	r.mu.Unlock()
}

// finish runs a step that must complete once begun, so cancellation (a signal) lands
// between steps and never leaves a half-made or half-destroyed VM. It is still bounded.
func (r *Reconciler) finish(ctx context.Context, step func(context.Context) error) error {
	c, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.OpTimeout)
	defer cancel()
	return step(c)
}

func (r *Reconciler) vmName(service, hash string, taken map[string]bool) string {
	r.randMu.Lock()
	defer r.randMu.Unlock()
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	for {
		suffix := make([]byte, 5)
		for i := range suffix {
			suffix[i] = alphabet[r.cfg.Rand.IntN(len(alphabet))]
		}
		name := fmt.Sprintf("%s-%s-%s", service, shortHash(hash), suffix)
		if !taken[name] {
			taken[name] = true
			return name
		}
	}
}

// registration is the Consul instance for a VM of svc.
func registration(svc sources.Service, vm hypervisor.VM) discovery.Registration {
	deregisterAfter := svc.Update.HealthyDeadline + time.Minute
	return discovery.Registration{
		ID:      vm.Name,
		Service: svc.Name,
		Address: vm.Address,
		Port:    vm.Port,
		Tags:    []string{Tag},
		Meta:    registrationMeta(vm.Meta),
		Check: discovery.Check{
			HTTPPath:                svc.Check.HTTP,
			TCP:                     svc.Check.TCP,
			Interval:                svc.Check.Interval,
			Timeout:                 svc.Check.Timeout,
			DeregisterCriticalAfter: deregisterAfter,
		},
	}
}

// chaos terminates one random passing instance of each service whose chaos block is
// due, through the normal drain path; the next pass replaces it. Only a service at rest
// takes part: nothing to do, every replica passing, at least two of them.
func (r *Reconciler) chaos(ctx context.Context, log *slog.Logger, p Plan) (bool, error) {
	now := r.cfg.Now()
	burnt := false
	var errs []error
	for _, sp := range p.Services {
		svc, ok := p.fleet.Service(sp.Service)
		if !ok || svc.Chaos == nil || !sp.Noop() || sp.Held != "" || svc.Replicas < 2 || len(sp.Current) != svc.Replicas {
			continue
		}
		r.mu.Lock()
		last, ok := r.lastBurn[svc.Name]
		r.mu.Unlock()
		if !ok {
			last = r.started
		}
		if !chaosDue(now, last, svc.Chaos) {
			continue
		}
		var candidates []string
		byName := map[string]hypervisor.VM{}
		for _, vm := range sp.Current {
			candidates = append(candidates, vm.Name)
			byName[vm.Name] = vm
		}
		if len(sp.Pending) > 0 || !r.allPassing(ctx, svc.Name, candidates) {
			continue
		}
		r.randMu.Lock()
		victim := pickVictim(candidates, r.cfg.Rand)
		r.randMu.Unlock()
		r.mu.Lock()
		r.lastBurn[svc.Name] = now
		r.mu.Unlock()
		log.Warn("chaos: terminating a healthy instance; it will be replaced", "service", svc.Name, "vm", victim, "event", "chaos", "interval", svc.Chaos.Interval, "window", svc.Chaos.Window.String())
		if err := r.retire(ctx, log.With("service", svc.Name), []hypervisor.VM{byName[victim]}, svc.Update.Drain, svc.Update.ShutdownTimeout); err != nil {
			errs = append(errs, fmt.Errorf("chaos on %s: %w", svc.Name, err))
			continue
		}
		burnt = true
	}
	return burnt, errors.Join(errs...)
}

// allPassing reports whether Consul sees every named instance passing right now.
func (r *Reconciler) allPassing(ctx context.Context, service string, ids []string) bool {
	instances, err := r.cfg.Registry.Instances(ctx, Tag)
	if err != nil {
		return false
	}
	passing := map[string]bool{}
	for _, in := range instances {
		if in.Service == service && in.Status == discovery.StatusPassing {
			passing[in.ID] = true
		}
	}
	for _, id := range ids {
		if !passing[id] {
			return false
		}
	}
	return true
}

// MetaFleet is the Consul meta key naming an instance's fleet.
const MetaFleet = "fleet"

// registrationMeta is the Consul meta of a VM's instance: what DESIGN.md promises
// clients (version, revision, spec_hash) and, when it has one, the VM's fleet.
func registrationMeta(m hypervisor.Metadata) map[string]string {
	meta := map[string]string{"version": m.Version, "revision": m.Revision, "spec_hash": m.SpecHash}
	if m.Fleet != "" {
		meta[MetaFleet] = m.Fleet
	}
	return meta
}

// maxFleetLen keeps a fleet name usable in Consul meta values and KV keys, and short
// enough to read in logs.
const maxFleetLen = 63

// ValidFleet checks a fleet name: 1 to 63 characters, lower-case letters, digits and
// '-', starting and ending with a letter or digit (a DNS label).
func ValidFleet(name string) error {
	if name == "" {
		return errors.New("fleet name is empty")
	}
	if len(name) > maxFleetLen {
		return fmt.Errorf("fleet name %q is %d characters long, more than %d", name, len(name), maxFleetLen)
	}
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(name)-1
		if !ok {
			return fmt.Errorf("fleet name %q: character %q at %d; use lower-case letters, digits and '-' (not first or last)", name, c, i+1)
		}
	}
	return nil
}
