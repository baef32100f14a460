package reconciler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/internal/redact"
	"github.com/drover-dev/drover/sources"
)

func kinds(evs []Event) []EventKind {
	out := make([]EventKind, 0, len(evs))
	for _, ev := range evs {
		out = append(out, ev.Kind)
	}
	return out
}

// drain takes what a subscriber has received so far.
func drain(ch <-chan Event) []Event {
	var out []Event
	for {
		select {
		case ev := <-ch:
			out = append(out, ev)
		default:
			return out
		}
	}
}

func mustPass(t *testing.T, r *Reconciler, rv sources.Revision) Result {
	t.Helper()
	res, err := r.Pass(t.Context(), rv)
	if err != nil {
		t.Fatalf("pass over %s: %v", rv.Commit, err)
	}
	return res
}

// TestEventsOfRollouts: a first deploy, an update, a failing update rolled back and
// held, and a retry each say so in the history, in order, numbered without gaps, and
// live subscribers get the same.
func TestEventsOfRollouts(t *testing.T) {
	w := newFakeWorld()
	w.unhealthy = map[string]bool{"3": true}
	r := fakeReconciler(t, w, nil)
	live, cancel := r.Subscribe()
	defer cancel()
	bad := svc("web", "3", 2, 0)
	bad.Update.HealthyDeadline = 100 * time.Millisecond

	steps := []struct {
		name string
		do   func() error
		want []EventKind
	}{
		{"first deploy", func() error { return mustPass(t, r, rev("c1", svc("web", "1", 2, 0))).Err },
			[]EventKind{EventRolloutStarted, EventVMCreated, EventVMCreated, EventRolloutSucceeded}},
		{"update", func() error { return mustPass(t, r, rev("c2", svc("web", "2", 2, 0))).Err },
			[]EventKind{EventRolloutStarted, EventVMCreated, EventVMCreated, EventVMRetired, EventVMRetired, EventRolloutSucceeded}},
		{"failing update", func() error {
			var rerr *RolloutError
			if err := mustPass(t, r, rev("c3", bad)).Err; !errors.As(err, &rerr) {
				return fmt.Errorf("got %v, want a RolloutError", err)
			}
			return nil
		}, []EventKind{EventRolloutStarted, EventVMCreated, EventVMCreated, EventRolloutFailed, EventRolledBack, EventRevisionHeld}},
		{"held: nothing happens", func() error { mustPass(t, r, rev("c3", bad)); return nil }, nil},
		{"retry", func() error { return r.Retry(t.Context(), "web") }, []EventKind{EventRevisionReleased}},
		{"released: tried again", func() error { mustPass(t, r, rev("c3", bad)); return nil },
			[]EventKind{EventRolloutStarted, EventVMCreated, EventVMCreated, EventRolloutFailed, EventRolledBack, EventRevisionHeld}},
	}
	var all []EventKind
	seen := 0
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		hist, err := r.History(t.Context(), "", 0)
		if err != nil {
			t.Fatal(err)
		}
		got := kinds(hist[seen:])
		// VMs are created and retired in parallel: compare each step's events as a
		// multiset within runs of the same kind, which the slice order already is.
		if !slices.Equal(got, st.want) {
			t.Errorf("%s: events\n got %v\nwant %v", st.name, got, st.want)
		}
		seen = len(hist)
		all = append(all, st.want...)
	}
	hist, _ := r.History(t.Context(), "", 0)
	for i, ev := range hist {
		if ev.Seq != uint64(i+1) || ev.Fleet != "test" || ev.Time.IsZero() {
			t.Errorf("event %d: seq %d fleet %q time %v; want seq %d, fleet test, a time", i, ev.Seq, ev.Fleet, ev.Time, i+1)
		}
	}
	if got := kinds(drain(live)); !slices.Equal(got, all) {
		t.Errorf("live events\n got %v\nwant %v", got, all)
	}
	// What an event says: the update's start and the failure.
	byKind := func(k EventKind, rev string) Event {
		for _, ev := range hist {
			if ev.Kind == k && ev.Revision == rev {
				return ev
			}
		}
		t.Fatalf("no %s event at %s in %v", k, rev, kinds(hist))
		return Event{}
	}
	if ev := byKind(EventRolloutStarted, "c2"); ev.Service != "web" || ev.Version != "2" || len(ev.VMs) != 2 {
		t.Errorf("rollout_started of c2: %+v, want web version 2 naming the 2 VMs it replaces", ev)
	}
	if ev := byKind(EventRolledBack, "c3"); len(ev.VMs) != 2 || ev.Version != "3" {
		t.Errorf("rolled_back of c3: %+v, want the 2 VMs of version 3", ev)
	}
	if ev := byKind(EventRevisionHeld, "c3"); !strings.Contains(ev.Reason, "deadline") {
		t.Errorf("revision_held reason %q, want the gate's deadline", ev.Reason)
	}
	if got, _ := r.History(t.Context(), "web", 3); len(got) != 3 || got[0].Kind != EventRolloutFailed || got[2].Kind != EventRevisionHeld {
		t.Errorf("History(web, 3): %v, want the last 3, from rollout_failed to revision_held", kinds(got))
	}
	if got, _ := r.History(t.Context(), "api", 0); len(got) != 0 {
		t.Errorf("History(api): %v, want none", kinds(got))
	}
}

// TestEventsOfRepairsAndPrune: drift, a stopped VM, a prune and chaos each leave their
// event.
func TestEventsOfRepairsAndPrune(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	w := newFakeWorld()
	r := fakeReconciler(t, w, func(c *Config) {
		c.Chaos = true
		c.Now = func() time.Time { return now }
	})
	web := svc("web", "1", 2, 0)
	web.Chaos = &sources.Chaos{Interval: time.Hour}
	api := svc("api", "1", 1, 0)
	mustPass(t, r, rev("c1", web, api))
	seen := len(must(r.History(t.Context(), "", 0)))
	step := func(name string, change func(), rv sources.Revision, want ...EventKind) {
		t.Helper()
		change()
		mustPass(t, r, rv)
		hist := must(r.History(t.Context(), "", 0))
		if got := kinds(hist[seen:]); !slices.Equal(got, want) {
			t.Errorf("%s: events\n got %v\nwant %v", name, got, want)
		}
		seen = len(hist)
	}
	first := func(service string) string {
		for _, vm := range w.vms {
			if vm.Meta.Service == service {
				return vm.Name
			}
		}
		t.Fatalf("no vm of %s", service)
		return ""
	}
	step("drift", func() {
		w.mu.Lock()
		vm := w.vms[first("api")]
		vm.Drift = []string{"memory 256 MiB, want 128 MiB"}
		w.vms[vm.Name] = vm
		w.mu.Unlock()
	}, rev("c1", web, api), EventDriftRepaired, EventVMCreated, EventVMRetired)
	step("stopped", func() {
		w.mu.Lock()
		vm := w.vms[first("api")]
		vm.State = hypervisor.StateShutoff
		w.vms[vm.Name] = vm
		w.mu.Unlock()
	}, rev("c1", web, api), EventDriftRepaired, EventVMCreated)
	step("chaos", func() { now = now.Add(2 * time.Hour) }, rev("c1", web, api), EventChaos, EventVMRetired)
	step("rebuilt after chaos", func() {}, rev("c1", web, api), EventVMCreated)
	step("prune", func() {}, rev("c2", web), EventVMRetired)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestEventReasonsRedactedAndBounded: credentials never reach an event, and a huge
// reason or VM list is cut to a size any store takes.
func TestEventReasonsRedactedAndBounded(t *testing.T) {
	r := fakeReconciler(t, newFakeWorld(), func(c *Config) { c.Secrets = redact.NewSet("s3cret-token") })
	r.emit(t.Context(), Event{Kind: EventRolloutFailed, Reason: "image https://bob:hunter2@images.lan/x.qcow2: 404 (token s3cret-token)"})
	many := make([]string, 1000)
	for i := range many {
		many[i] = fmt.Sprintf("web-%08d-abcde", i)
	}
	r.emit(t.Context(), Event{Kind: EventRolledBack, VMs: many, Reason: strings.Repeat("é", 5000)})
	hist := must(r.History(t.Context(), "", 0))
	if reason := hist[0].Reason; strings.Contains(reason, "hunter2") || strings.Contains(reason, "s3cret-token") {
		t.Errorf("reason %q shows a credential", reason)
	}
	big := hist[1]
	if len(big.Reason) > maxEventReason || len(big.VMs) != maxEventVMs || !strings.Contains(big.Reason, "744 more VMs") {
		t.Errorf("bounded event: reason %d bytes (%q…), %d VMs; want <= %d bytes naming the 744 left out, %d VMs",
			len(big.Reason), truncate(big.Reason, 40), len(big.VMs), maxEventReason, maxEventVMs)
	}
}

// TestSlowSubscriberNeverBlocks: a subscriber that never reads keeps its buffer's worth
// and loses the rest; emitting and storing go on.
func TestSlowSubscriberNeverBlocks(t *testing.T) {
	r := fakeReconciler(t, newFakeWorld(), nil)
	slow, stop := r.Subscribe() // never read until the end
	defer stop()
	const n = 3 * subscriberBuffer
	for i := range n {
		r.emit(t.Context(), Event{Kind: EventChaos, Reason: fmt.Sprint(i)})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := r.FlushEvents(ctx); err != nil {
		t.Fatalf("the writer is held by a subscriber that does not read: %v", err)
	}
	if got := len(must(r.History(ctx, "", 0))); got != n {
		t.Errorf("history has %d events, want all %d", got, n)
	}
	if got := drain(slow); len(got) != subscriberBuffer || got[0].Seq != 1 {
		t.Errorf("the slow subscriber got %d events from seq %v, want its first %d", len(got), seqs(got[:1]), subscriberBuffer)
	}
}

// TestRollingRolloutAnnouncedOnce: a rolling rollout without surge takes many passes,
// the first of which only retires; it is announced once, before anything it does, and
// succeeds once, at its end.
func TestRollingRolloutAnnouncedOnce(t *testing.T) {
	w := newFakeWorld()
	r := fakeReconciler(t, w, nil)
	rolling := func(version string) sources.Service {
		s := svc("web", version, 3, 0)
		s.Update.Strategy, s.Update.MaxSurge, s.Update.MaxUnavailable = sources.StrategyRolling, 0, 1
		return s
	}
	for range 10 {
		mustPass(t, r, rev("c1", rolling("1")))
	}
	seen := len(must(r.History(t.Context(), "", 0)))
	for range 20 {
		mustPass(t, r, rev("c2", rolling("2")))
	}
	if w.count("web", "2") != 3 || w.count("web", "1") != 0 {
		t.Fatalf("rolling rollout did not complete: %d of version 2, %d of version 1", w.count("web", "2"), w.count("web", "1"))
	}
	got := kinds(must(r.History(t.Context(), "", 0))[seen:])
	count := func(k EventKind) int {
		n := 0
		for _, g := range got {
			if g == k {
				n++
			}
		}
		return n
	}
	if len(got) == 0 || got[0] != EventRolloutStarted || got[len(got)-1] != EventRolloutSucceeded ||
		count(EventRolloutStarted) != 1 || count(EventRolloutSucceeded) != 1 || count(EventVMCreated) != 3 || count(EventVMRetired) != 3 {
		t.Errorf("events of a rolling rollout without surge: %v; want one start first, 3 created, 3 retired, one success last", got)
	}
}
