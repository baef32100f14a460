package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/testenv"
)

// consulReconciler is a Reconciler over the fake world whose events, failures and
// suspensions live in a real Consul.
func consulReconciler(t *testing.T, w *fakeWorld, c *discovery.Client, kept int) *Reconciler {
	t.Helper()
	return fakeReconciler(t, w, func(cfg *Config) {
		cfg.Events, cfg.Failures, cfg.EventsKept = c, c, kept
		cfg.Log = leaderTestLog(t)
	})
}

func consulClient(t *testing.T, agent *testenv.ConsulAgent) *discovery.Client {
	t.Helper()
	c, err := discovery.New(discovery.Config{Address: agent.Addr}, leaderTestLog(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func seqs(evs []Event) []uint64 {
	out := make([]uint64, 0, len(evs))
	for _, ev := range evs {
		out = append(out, ev.Seq)
	}
	return out
}

func span(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// TestEventRingInConsul: the ring keeps the last N across wrap-around, a restarted
// Drover (a new Reconciler) reads the same history, two Drovers appending at once get
// gap-free numbers, and a Drover whose fence says it no longer leads stores nothing
// but still delivers live.
func TestEventRingInConsul(t *testing.T) {
	agent := testenv.Consul(t)
	ctx := t.Context()
	w := newFakeWorld()

	t.Run("wrap-around and restart", func(t *testing.T) {
		r := consulReconciler(t, w, consulClient(t, agent), 10)
		for i := range 25 {
			r.emit(ctx, Event{Kind: EventChaos, Service: "web", Reason: fmt.Sprint(i)})
		}
		got := must(r.History(ctx, "", 0))
		if want := span(16, 25); !slices.Equal(seqs(got), want) {
			t.Fatalf("after 25 events in a ring of 10: seqs %v, want %v", seqs(got), want)
		}
		if got[0].Reason != "15" || got[9].Reason != "24" {
			t.Errorf("kept reasons %q..%q, want 15..24", got[0].Reason, got[9].Reason)
		}
		again := must(consulReconciler(t, newFakeWorld(), consulClient(t, agent), 10).History(ctx, "", 4))
		if want := span(22, 25); !slices.Equal(seqs(again), want) {
			t.Errorf("a new Reconciler's last 4: seqs %v, want %v", seqs(again), want)
		}
	})

	t.Run("two writers", func(t *testing.T) {
		w := newFakeWorld()
		a := fakeReconciler(t, w, func(cfg *Config) { cfg.Fleet, cfg.Events = "two", consulClient(t, agent) })
		b := fakeReconciler(t, w, func(cfg *Config) { cfg.Fleet, cfg.Events = "two", consulClient(t, agent) })
		const each = 60
		var wg sync.WaitGroup
		for name, r := range map[string]*Reconciler{"a": a, "b": b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					r.emit(ctx, Event{Kind: EventVMCreated, Service: name, Reason: fmt.Sprint(i)})
				}
				if err := r.FlushEvents(ctx); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		got := must(a.History(ctx, "", 0))
		if want := span(1, 2*each); !slices.Equal(seqs(got), want) {
			t.Fatalf("two writers, %d events each: seqs %v, want 1..%d once each", each, seqs(got), 2*each)
		}
		for _, name := range []string{"a", "b"} {
			var order []string
			for _, ev := range must(b.History(ctx, name, 0)) {
				order = append(order, ev.Reason)
			}
			if len(order) != each || order[0] != "0" || order[each-1] != fmt.Sprint(each-1) {
				t.Errorf("writer %s: %d events %v, want its %d in the order emitted", name, len(order), order, each)
			}
		}
	})

	t.Run("not leader", func(t *testing.T) {
		r := fakeReconciler(t, newFakeWorld(), func(cfg *Config) { cfg.Fleet, cfg.Events = "fenced", consulClient(t, agent) })
		live, cancel := r.Subscribe()
		defer cancel()
		r.emit(WithFence(ctx, lapsed{}), Event{Kind: EventLeaderLost})
		select {
		case ev := <-live:
			if ev.Kind != EventLeaderLost || ev.Seq != 0 {
				t.Errorf("live event %+v, want leader_lost, unnumbered (not stored)", ev)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the unstored event was not delivered live")
		}
		if got := must(r.History(ctx, "", 0)); len(got) != 0 {
			t.Errorf("history after a fenced-off event: %v, want empty", kinds(got))
		}
	})
}

// lapsed is a fence whose leadership has ended.
type lapsed struct{}

func (lapsed) Guard(context.Context) (context.Context, context.CancelFunc, error) {
	return nil, nil, discovery.ErrNotLeader
}

// TestSuspendHonouredByAStandby: a suspension made through one Drover is kept in
// Consul, so another (a standby that takes over, or a restart) leaves the service
// alone too, and a retry through it releases a hold the first recorded.
func TestSuspendHonouredByAStandby(t *testing.T) {
	agent := testenv.Consul(t)
	ctx := t.Context()
	w := newFakeWorld()
	w.unhealthy = map[string]bool{"3": true}
	first := consulReconciler(t, w, consulClient(t, agent), 100)
	mustPass(t, first, rev("c1", svc("web", "1", 2, 0), svc("api", "1", 1, 0)))
	if err := first.Suspend(ctx, "web", "frozen for an audit"); err != nil {
		t.Fatal(err)
	}
	bad := svc("api", "3", 1, 0)
	bad.Update.HealthyDeadline = 50 * time.Millisecond
	var rerr *RolloutError
	if res := mustPass(t, first, rev("c2", svc("web", "2", 2, 0), bad)); !errors.As(res.Err, &rerr) {
		t.Fatalf("api at version 3: %v, want a failed rollout", res.Err)
	}

	standby := consulReconciler(t, w, consulClient(t, agent), 100)
	before := w.webMutations()
	res := mustPass(t, standby, rev("c2", svc("web", "2", 2, 0), bad))
	if got := w.webMutations(); !slices.Equal(got, before) || w.count("web", "1") != 2 {
		t.Errorf("the standby touched suspended web: %v", got[len(before):])
	}
	var held *HeldError
	if !errors.As(res.Err, &held) {
		t.Errorf("the standby's pass over the failed api: %v, want it held", res.Err)
	}
	if err := standby.Retry(ctx, "api"); err != nil {
		t.Fatal(err)
	}
	if _, err := first.failures(ctx); err != nil {
		t.Fatal(err)
	}
	if f, _ := first.failures(ctx); len(f) != 0 {
		t.Errorf("after the standby's retry the first still sees holds %+v", f)
	}
	if err := standby.Resume(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	mustPass(t, first, rev("c2", svc("web", "2", 2, 0), svc("api", "1", 1, 0)))
	if w.count("web", "2") != 2 {
		t.Errorf("after the standby resumed web, the first did not roll it out: %d VMs of version 2", w.count("web", "2"))
	}
	got := kinds(must(first.History(ctx, "", 0)))
	for _, k := range []EventKind{EventSuspended, EventRevisionHeld, EventRevisionReleased, EventResumed} {
		if !slices.Contains(got, k) {
			t.Errorf("shared history %v lacks %s", got, k)
		}
	}
}

// TestOfflineOperator: a CLI that reaches no Drover suspends, retries and reads the
// history through Consul alone, and the running Drover honours what it did.
func TestOfflineOperator(t *testing.T) {
	agent := testenv.Consul(t)
	ctx := t.Context()
	w := newFakeWorld()
	running := consulReconciler(t, w, consulClient(t, agent), 100)
	mustPass(t, running, rev("c1", svc("web", "1", 1, 0)))
	c := consulClient(t, agent)
	cli, err := NewOffline("test", c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Suspend(ctx, "web", "from the cli"); err != nil {
		t.Fatal(err)
	}
	before := w.webMutations()
	mustPass(t, running, rev("c2", svc("web", "2", 1, 0)))
	if got := w.webMutations(); !slices.Equal(got, before) {
		t.Errorf("suspended through the CLI, web was still touched: %v", got[len(before):])
	}
	if err := cli.Retry(ctx, "web"); !errors.Is(err, ErrNotHeld) {
		t.Errorf("offline Retry without a hold: %v, want ErrNotHeld", err)
	}
	hist, err := cli.History(ctx, "web", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(hist); len(got) == 0 || got[len(got)-1] != EventSuspended || got[0] != EventRolloutStarted {
		t.Errorf("offline history %v, want the running Drover's rollout first and the CLI's suspension last", got)
	}
	if err := cli.Suspend(ctx, "nope", ""); !errors.Is(err, ErrUnknownService) {
		t.Errorf("offline Suspend of a service Consul knows nothing of: %v, want ErrUnknownService", err)
	}
	// The fake world registers nothing in Consul: the status is the records alone.
	st, err := cli.FleetStatus(ctx)
	if err != nil || st.Fleet != "test" || len(st.Services) != 1 || st.Services[0].Name != "web" || st.Services[0].Phase != PhaseSuspended ||
		st.Services[0].Suspended == nil || st.Services[0].Suspended.Reason != "from the cli" {
		t.Errorf("offline FleetStatus: got %+v, %v; want web suspended from the cli", st, err)
	}
	if err := cli.Reconcile(ctx); !errors.Is(err, ErrNotRunning) {
		t.Errorf("offline Reconcile: %v, want ErrNotRunning", err)
	}
}

// BenchmarkEventToSubscriber: from emit to a live subscriber, through a real Consul's
// ring (one transaction per event, the head read before it).
func BenchmarkEventToSubscriber(b *testing.B) {
	agent := testenv.Consul(b)
	c, err := discovery.New(discovery.Config{Address: agent.Addr}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	w := newFakeWorld()
	r, err := New(Config{Fleet: "bench", Hypervisor: w, Registrar: w, Health: w, Images: w, Events: c})
	if err != nil {
		b.Fatal(err)
	}
	live, cancel := r.Subscribe()
	defer cancel()
	for b.Loop() {
		r.emit(b.Context(), Event{Kind: EventVMCreated, Service: "web", VMs: []string{"web-12345678-abcde"}})
		if ev := <-live; ev.Seq == 0 {
			b.Fatal("event not stored")
		}
	}
}
