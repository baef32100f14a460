package reconciler

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
)

// Bounds of one event, so a rollback of many VMs or a long error never makes an entry
// Consul refuses.
const (
	maxEventReason = 2048
	maxEventVMs    = 256
	// eventQueue bounds the events waiting to be stored; beyond it they go to the live
	// subscribers unstored rather than hold a pass.
	eventQueue = 1024
	// subscriberBuffer is each subscriber's channel: one that falls further behind
	// loses events.
	subscriberBuffer = 64
	// storeCooldown is how long events skip the store after Consul did not answer, so
	// an outage does not delay every live event by a call timeout.
	storeCooldown = 5 * time.Second
	// DefaultEventsKept is Config.EventsKept's default.
	DefaultEventsKept = 1000
)

// events is the fleet's event stream. emit never waits: one writer goroutine, started
// on demand, stores each event in the EventStore (which numbers it) and then delivers
// it to the live subscribers, in the order emitted, so a subscriber that reads History
// first and then follows sees every event once, by Seq. Without a store, events are
// numbered and kept (the last EventsKept) in memory.
type events struct {
	mu      sync.Mutex
	queue   []queuedEvent
	writing bool
	idle    chan struct{} // closed when the writer has stored everything queued

	subs    map[int]chan Event
	nextSub int

	seq       uint64  // without a store: the last number given
	mem       []Event // without a store: the last EventsKept
	downUntil time.Time
}

type queuedEvent struct {
	ctx context.Context // the emitter's, for its leadership fence
	ev  Event
}

// emit records that something happened: the reason is redacted and bounded, the time
// and fleet filled in. It returns at once.
func (r *Reconciler) emit(ctx context.Context, ev Event) {
	ev.Time = r.cfg.Now().UTC()
	ev.Fleet = r.cfg.Fleet
	ev.Reason = r.redactReason(ev.Reason)
	if len(ev.VMs) > maxEventVMs {
		more := fmt.Sprintf(" (and %d more VMs)", len(ev.VMs)-maxEventVMs)
		ev.Reason = truncate(ev.Reason, maxEventReason-len(more)) + more
		ev.VMs = ev.VMs[:maxEventVMs]
	}
	e := &r.events
	e.mu.Lock()
	if len(e.queue) >= eventQueue {
		e.mu.Unlock()
		r.log.Warn("event queue full; delivering the event live without storing it", "kind", ev.Kind, "service", ev.Service)
		r.publish(ev)
		return
	}
	e.queue = append(e.queue, queuedEvent{ctx: context.WithoutCancel(ctx), ev: ev})
	if !e.writing {
		e.writing = true
		e.idle = make(chan struct{})
		go r.writeEvents()
	}
	e.mu.Unlock()
}

// writeEvents stores and delivers the queued events, one at a time, until none is left.
func (r *Reconciler) writeEvents() {
	e := &r.events
	for {
		e.mu.Lock()
		if len(e.queue) == 0 {
			e.writing = false
			close(e.idle)
			e.mu.Unlock()
			return
		}
		q := e.queue[0]
		e.queue = e.queue[1:]
		e.mu.Unlock()
		q.ev.Seq = r.storeEvent(q.ctx, q.ev)
		r.publish(q.ev)
	}
}

// storeEvent appends ev to the fleet's ring and returns its number, 0 when it could not
// be stored: that is logged, and the event still goes to the live subscribers. The
// append is a KV write like any other, so it runs under the emitter's fence: a Drover
// that lost its leadership stores nothing.
func (r *Reconciler) storeEvent(ctx context.Context, ev Event) uint64 {
	e := &r.events
	if r.cfg.Events == nil {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.seq++
		ev.Seq = e.seq
		e.mem = append(e.mem, ev)
		if over := len(e.mem) - r.cfg.EventsKept; over > 0 {
			e.mem = slices.Delete(e.mem, 0, over)
		}
		return ev.Seq
	}
	now := time.Now()
	e.mu.Lock()
	down := now.Before(e.downUntil)
	e.mu.Unlock()
	if down {
		r.log.Debug("consul did not answer lately; event delivered live only", "kind", ev.Kind, "service", ev.Service)
		return 0
	}
	var seq uint64
	err := r.finish(ctx, func(ctx context.Context) error {
		var err error
		seq, err = r.cfg.Events.RingAppend(ctx, r.eventRing(), func(seq uint64) ([]byte, error) {
			ev.Seq = seq
			return json.Marshal(ev)
		})
		return err
	})
	if err != nil {
		if errors.Is(err, discovery.ErrUnavailable) {
			e.mu.Lock()
			e.downUntil = now.Add(storeCooldown)
			e.mu.Unlock()
		}
		r.log.Warn("event not stored in consul; delivered live only", "kind", ev.Kind, "service", ev.Service, "err", err)
		return 0
	}
	return seq
}

// publish hands ev to every live subscriber that has room for it.
func (r *Reconciler) publish(ev Event) {
	e := &r.events
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ch := range e.subs {
		select {
		case ch <- ev:
		default: // slow subscriber: it loses this one
		}
	}
}

// Subscribe delivers events as they happen (after they are stored, with their Seq)
// until cancel is called. A subscriber that does not keep up loses events; it never
// slows a pass.
func (r *Reconciler) Subscribe() (<-chan Event, func()) {
	e := &r.events
	ch := make(chan Event, subscriberBuffer)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.subs == nil {
		e.subs = map[int]chan Event{}
	}
	id := e.nextSub
	e.nextSub++
	e.subs[id] = ch
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			e.mu.Lock()
			delete(e.subs, id)
			e.mu.Unlock()
		})
	}
}

// FlushEvents waits until every event emitted so far is stored (or given up on), or
// ctx ends. A stopping Drover calls it so its last events are kept.
func (r *Reconciler) FlushEvents(ctx context.Context) error {
	e := &r.events
	e.mu.Lock()
	if !e.writing {
		e.mu.Unlock()
		return nil
	}
	idle := e.idle
	e.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flush events: %w", ctx.Err())
	}
}

// History is the fleet's stored events, oldest first, the last limit of them (all kept
// when limit <= 0); service "" means every service. What this Drover emitted before the
// call is stored first, so it reads its own events.
func (r *Reconciler) History(ctx context.Context, service string, limit int) ([]Event, error) {
	if err := r.FlushEvents(ctx); err != nil {
		return nil, err
	}
	var all []Event
	if r.cfg.Events == nil {
		r.events.mu.Lock()
		all = slices.Clone(r.events.mem)
		r.events.mu.Unlock()
	} else {
		head, values, err := r.cfg.Events.RingRead(ctx, r.eventRing())
		if err != nil {
			return nil, fmt.Errorf("read event history: %w", err)
		}
		kept := uint64(r.cfg.EventsKept)
		for _, raw := range values {
			var ev Event
			if err := json.Unmarshal(raw, &ev); err != nil {
				r.log.Warn("ignoring unreadable stored event", "err", err)
				continue
			}
			// Slots of a larger ring, and numbers the head has not reached, are stale.
			if ev.Seq == 0 || ev.Seq > head || head-ev.Seq >= kept {
				continue
			}
			all = append(all, ev)
		}
		slices.SortFunc(all, func(a, b Event) int { return cmp.Compare(a.Seq, b.Seq) })
	}
	out := all[:0]
	for _, ev := range all {
		if service == "" || ev.Service == service {
			out = append(out, ev)
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return slices.Clip(out), nil
}

// eventRing is where the fleet's events are kept in Consul.
func (r *Reconciler) eventRing() discovery.Ring {
	return discovery.Ring{Prefix: fleetKV(r.cfg.Fleet) + "events/", Size: r.cfg.EventsKept}
}

// fleetKV is the fleet's part of Consul's KV store.
func fleetKV(fleet string) string {
	if fleet == "" {
		fleet = "-" // never a valid fleet name
	}
	return "drover/fleets/" + fleet + "/"
}

// redactReason masks credentials in a reason and bounds it.
func (r *Reconciler) redactReason(s string) string {
	return truncate(r.cfg.Secrets.String(s), maxEventReason)
}

// truncate bounds s to n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - len("…")
	for i > 0 && s[i]&0xC0 == 0x80 {
		i--
	}
	return s[:i] + "…"
}

// rolloutBegins reports whether a step starts a rollout: it acts toward a spec that
// replaces others (or a service's first deploy) of which no VM exists yet, and this
// Drover has not announced it (a rolling step that only retires comes first, and the
// next one still finds no VM of the new spec). A scale-up, a drift repair and the
// restoring of a held service's predecessors start none.
func (r *Reconciler) rolloutBegins(sp ServicePlan) bool {
	if sp.Held != "" || len(sp.Current) > 0 || (sp.Create == 0 && len(sp.RetireFirst) == 0) || !newSpec(sp) {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.announced[sp.Service] == sp.SpecHash {
		return false
	}
	r.announced[sp.Service] = sp.SpecHash
	return true
}

// rolloutEnds reports whether a step that succeeded leaves the rollout done: no VM of
// another spec is left and the desired spec has all its replicas.
func (r *Reconciler) rolloutEnds(sp ServicePlan) bool {
	if sp.Held != "" || len(sp.Current)+sp.Create < sp.Replicas {
		return false
	}
	for _, vm := range sp.Predecessors {
		if vm.Meta.SpecHash != sp.SpecHash && !goesNow(sp, vm.Name) {
			return false
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// The last step of a rolling rollout may only add the last VM of the new spec.
	if !newSpec(sp) && r.announced[sp.Service] != sp.SpecHash {
		return false
	}
	delete(r.announced, sp.Service)
	return true
}

// rolloutOver forgets the announced rollout of service: it ended, so a retry of the same
// spec is a new one.
func (r *Reconciler) rolloutOver(service string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.announced, service)
}

// newSpec reports whether the service is moving to a spec (a new version, a first
// deploy) rather than repairing or scaling the one it runs.
func newSpec(sp ServicePlan) bool {
	if len(sp.Current) == 0 && len(sp.Predecessors) == 0 {
		// Nothing of the service runs: a first deploy, unless it is a stopped VM's repair.
		return sp.Create > 0 && len(sp.Remove) == 0
	}
	return slices.ContainsFunc(sp.Predecessors, func(vm hypervisor.VM) bool { return vm.Meta.SpecHash != sp.SpecHash })
}

// goesNow reports whether the step retires the named VM.
func goesNow(sp ServicePlan, name string) bool {
	is := func(vm hypervisor.VM) bool { return vm.Name == name }
	return slices.ContainsFunc(sp.Retire, is) || slices.ContainsFunc(sp.RetireFirst, is)
}

// retiredEvent is a VM gone, with why.
func retiredEvent(vm hypervisor.VM, why string) Event {
	return Event{Kind: EventVMRetired, Service: vm.Meta.Service, Revision: vm.Meta.Revision, Version: vm.Meta.Version, VMs: []string{vm.Name}, Reason: why}
}

// removedEvent is a VM that was not running removed: a repair, or part of a prune.
func removedEvent(sp ServicePlan, vm hypervisor.VM) Event {
	if sp.Prune {
		return retiredEvent(vm, "service removed from the fleet")
	}
	ev := retiredEvent(vm, fmt.Sprintf("was %s: removed; a pass replaces it", vm.State))
	ev.Kind = EventDriftRepaired
	return ev
}

func names(vms []hypervisor.VM) []string {
	out := make([]string, 0, len(vms))
	for _, vm := range vms {
		out = append(out, vm.Name)
	}
	return out
}
