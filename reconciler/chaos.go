package reconciler

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/sources"
)

// Burn-and-rebuild decisions, kept pure so the clock and the random source stay the
// caller's. The pass decides whether to act (every replica passing, nothing else in
// flight) and retires the victim through the normal drain path; the next pass replaces
// it like any missing replica.

// chaosDue reports whether a service with chaos block c should lose an instance at now,
// its last burn having been at last: at least Interval has passed and now is inside the
// window. A nil block is never due.
//
// A zero last counts as a burn at the beginning of time: the service is due at the
// first instant inside the window. Callers that keep no record of burns across restarts
// should pass the instant they started watching the service instead of zero, so that
// the first burn comes at the first window opportunity at least Interval after start,
// and a Drover that restarts often does not burn an instance on every start.
func chaosDue(now, last time.Time, c *sources.Chaos) bool {
	if c == nil || c.Interval <= 0 {
		return false
	}
	if !last.IsZero() && now.Sub(last) < c.Interval {
		return false
	}
	return c.Window.Contains(now)
}

// pickVictim chooses uniformly among candidates, the instance names eligible to burn; ""
// when there are none. The candidates are sorted first, so a seeded source picks the
// same victim from the same set whatever order the caller listed it in.
func pickVictim(candidates []string, rnd *rand.Rand) string {
	if len(candidates) == 0 {
		return ""
	}
	sorted := slices.Clone(candidates)
	slices.Sort(sorted)
	return sorted[rnd.IntN(len(sorted))]
}

// chaos terminates one random passing instance of each service whose chaos block is
// due, through the normal drain path, as that service's background work; the next pass
// replaces it. Only a service at rest takes part: nothing to do, nothing in progress,
// every replica passing, at least two of them. It reports whether it started a burn.
func (r *Reconciler) chaos(ctx context.Context, log *slog.Logger, p Plan) bool {
	now := r.cfg.Now()
	burnt := false
	for _, sp := range p.Services {
		svc, ok := p.fleet.Service(sp.Service)
		if !ok || svc.Chaos == nil || !sp.Noop() || sp.InProgress || sp.Held != "" || sp.Suspended != nil || svc.Replicas < 2 || len(sp.Current) != svc.Replicas {
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
		reason := fmt.Sprintf("burn and rebuild: a healthy instance is terminated every %s (window %s); the next pass replaces it", svc.Chaos.Interval, svc.Chaos.Window.String())
		started := r.work.start(svc.Name, func() error {
			r.emit(ctx, Event{Kind: EventChaos, Service: svc.Name, Revision: byName[victim].Meta.Revision, Version: svc.Version, VMs: []string{victim}, Reason: reason})
			if err := r.retire(ctx, log.With("service", svc.Name), []hypervisor.VM{byName[victim]}, svc.Update.Drain, svc.Update.ShutdownTimeout, "chaos"); err != nil {
				return fmt.Errorf("chaos on %s: %w", svc.Name, err)
			}
			return nil
		})
		burnt = burnt || started
	}
	return burnt
}

// allPassing reports whether Consul sees every named instance passing right now.
func (r *Reconciler) allPassing(ctx context.Context, service string, ids []string) bool {
	instances, err := r.cfg.Health.Instances(ctx, Tag)
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
