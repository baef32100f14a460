package reconciler

import (
	"context"
	"testing"
	"time"

	"github.com/drover-dev/drover/discovery"
)

// TestLongDrainDoesNotHoldBackOtherServices: service a's rollout drains its predecessors
// for an hour; a newer commit changing service b is acted on meanwhile, and the runner
// returns once cancelled, its background work ended.
func TestLongDrainDoesNotHoldBackOtherServices(t *testing.T) {
	w := newFakeWorld()
	r := fakeReconciler(t, w, nil)
	if res, err := r.Pass(t.Context(), rev("c1", svc("a", "1", 2, time.Hour), svc("b", "1", 1, 0))); err != nil || res.Err != nil {
		t.Fatalf("deploy: %v %v", err, res.Err)
	}

	src := &revSource{}
	src.set(rev("c2", svc("a", "2", 2, time.Hour), svc("b", "1", 1, 0)))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- (&Runner{Source: src, Reconciler: r, Interval: 10 * time.Millisecond}).Run(ctx) }()

	// a's new VMs pass, and its old ones drain (in maintenance) for an hour.
	eventually(t, "a v2 up and a v1 draining", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		draining := 0
		for _, in := range w.instances {
			if in.Service == "a" && in.Status == discovery.StatusMaintenance {
				draining++
			}
		}
		return draining == 2
	})
	if got := w.count("a", "2"); got != 2 {
		t.Fatalf("a v2 VMs: %d, want 2", got)
	}

	src.set(rev("c3", svc("a", "2", 2, time.Hour), svc("b", "2", 1, 0)))
	eventually(t, "b rolled out to v2 while a drains", func() bool { return w.count("b", "2") == 1 && w.count("b", "1") == 0 })
	if got := w.count("a", "1"); got != 2 {
		t.Errorf("a v1 VMs while draining: %d, want 2 still there", got)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel: %v, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if busy := r.work.busy(); len(busy) != 0 {
		t.Errorf("rollouts still running after Run returned: %v", busy)
	}
}

// TestInProgressServiceIsNotActedOnTwice: a pass while a service's rollout runs reports
// it in progress and starts nothing for it.
func TestInProgressServiceIsNotActedOnTwice(t *testing.T) {
	w := newFakeWorld()
	w.createGate = make(chan struct{})
	r := fakeReconciler(t, w, nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer func() { cancel(); r.Wait() }()
	desired := rev("c1", svc("a", "1", 2, 0))
	res, err := r.Start(ctx, desired)
	if err != nil || !res.Changed || len(res.InProgress) != 1 {
		t.Fatalf("first pass: changed=%v in progress=%v err=%v %v; want a started", res.Changed, res.InProgress, err, res.Err)
	}
	eventually(t, "two creates in flight", func() bool { return w.mutationCount() == 2 })
	res, err = r.Start(ctx, desired)
	if err != nil || res.Changed || len(res.InProgress) != 1 || !res.Plan.Services[0].InProgress {
		t.Fatalf("second pass: changed=%v in progress=%v err=%v %v; want a in progress, nothing started", res.Changed, res.InProgress, err, res.Err)
	}
	if n := w.mutationCount(); n != 2 {
		t.Errorf("mutations after the second pass: %d, want the first pass's 2", n)
	}
	close(w.createGate)
	r.Wait()
	res, err = r.Start(ctx, desired)
	if err != nil || res.Changed || res.Err != nil || len(res.InProgress) != 0 {
		t.Errorf("pass after the rollout: changed=%v in progress=%v err=%v %v; want converged", res.Changed, res.InProgress, err, res.Err)
	}
}

// TestParallelCreatesAreBounded: ten replicas boot at most MaxParallelCreates at a time.
func TestParallelCreatesAreBounded(t *testing.T) {
	w := newFakeWorld()
	w.createGate = make(chan struct{})
	r := fakeReconciler(t, w, func(c *Config) { c.MaxParallelCreates = 3 })
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if _, err := r.Start(ctx, rev("c1", svc("a", "1", 10, 0))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "three creates in flight", func() bool { return w.mutationCount() == 3 })
	for range 10 {
		w.createGate <- struct{}{}
	}
	r.Wait()
	if w.maxCreating != 3 || w.count("a", "1") != 10 {
		t.Errorf("creates in flight at most %d (want 3), VMs %d (want 10)", w.maxCreating, w.count("a", "1"))
	}
}

// TestFailingRolloutBacksOff: a rollout that fails at once (the hypervisor refuses every
// create) is retried after the runner's backoff, not woken again at once by its own end.
func TestFailingRolloutBacksOff(t *testing.T) {
	w := newFakeWorld()
	w.createErr = errFake
	r := fakeReconciler(t, w, nil)
	src := &revSource{}
	src.set(rev("c1", svc("a", "1", 1, 0)))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- (&Runner{Source: src, Reconciler: r, Interval: time.Hour, MaxBackoff: time.Hour}).Run(ctx)
	}()
	eventually(t, "the first create", func() bool { return w.mutationCount() >= 1 })
	// The window in which a hot loop would make hundreds of attempts; the backoff's
	// first delay is at least 500ms.
	time.Sleep(300 * time.Millisecond)
	cancel()
	<-done
	if n := w.mutationCount(); n > 2 {
		t.Errorf("creates within 300ms of a failing rollout: %d (%v), want the first (and at most one retry)", n, w.mutations[:min(n, 5)])
	}
}
