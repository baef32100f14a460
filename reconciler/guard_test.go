package reconciler

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/sources"
)

// fakeFence is a leadership term that lapses when the test says.
type fakeFence struct {
	mu     sync.Mutex
	lapsed bool
	done   chan struct{}
}

var errNotLeader = errors.New("not the leader")

func newFakeFence() *fakeFence { return &fakeFence{done: make(chan struct{})} }

func (f *fakeFence) Guard(ctx context.Context) (context.Context, context.CancelFunc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lapsed {
		return nil, nil, errNotLeader
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(ctx, func() {})
	go func() {
		select {
		case <-f.done:
			cancel(errNotLeader)
		case <-ctx.Done():
		}
	}()
	return ctx, func() { stop(); cancel(context.Canceled) }, nil
}

func (f *fakeFence) lapse() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.lapsed {
		f.lapsed = true
		close(f.done)
	}
}

func (f *fakeFence) isLapsed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lapsed
}

// TestFenceCutsStepsInFlightAndStopsNewOnes: creates are in flight when the leadership
// lapses. Their contexts end (the driver returns), and no mutating call reaches the
// hypervisor or Consul afterwards, although the runner keeps passing until its context
// ends (the leader loop's job) and the rollout's own cleanup detaches from cancellation.
func TestFenceCutsStepsInFlightAndStopsNewOnes(t *testing.T) {
	w := newFakeWorld()
	w.createGate = make(chan struct{}) // never opened: creates end only when cut
	mem := &mapStore{kv: map[string][]byte{}}
	r := fakeReconciler(t, w, func(c *Config) { c.Failures = mem })
	fence := newFakeFence()
	w.frozen = fence.isLapsed

	src := &revSource{}
	src.set(rev("c1", svc("a", "1", 2, 0)))
	ctx, cancel := context.WithCancel(WithFence(t.Context(), fence))
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- (&Runner{Source: src, Reconciler: r, Interval: 5 * time.Millisecond}).Run(ctx) }()
	eventually(t, "two creates in flight", func() bool { return w.mutationCount() == 2 })
	w.createGate <- struct{}{} // one VM gets made
	eventually(t, "one VM made", func() bool { return w.count("a", "1") == 1 })

	fence.lapse()
	eventually(t, "the rollout cut by the fence", func() bool { return len(r.work.busy()) == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if len(w.late) != 0 {
		t.Errorf("mutating calls after the leadership lapsed: %v", w.late)
	}
	if len(mem.kv) != 0 {
		t.Errorf("KV puts after the leadership lapsed: %v", mem.kv)
	}
	// A create cut by the fence is no verdict: the revision is not held here either.
	if len(r.failed) != 0 {
		t.Errorf("failed revisions recorded for a rollout cut by the fence: %+v", r.failed)
	}
}

// TestLapsedFenceChangesNothing: a pass under a lapsed fence plans but performs no step.
func TestLapsedFenceChangesNothing(t *testing.T) {
	w := newFakeWorld()
	r := fakeReconciler(t, w, nil)
	fence := newFakeFence()
	fence.lapse()
	res, err := r.Pass(WithFence(t.Context(), fence), rev("c1", svc("a", "1", 2, 0)))
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res.Err, errNotLeader) {
		t.Errorf("pass under a lapsed fence: %v, want the guard's error", res.Err)
	}
	if n := w.mutationCount(); n != 0 {
		t.Errorf("mutating calls under a lapsed fence: %v", w.mutations)
	}
}

// TestSweepOnlyWhenActing: Sweep deletes files, so `drover plan` never runs it, and a
// pass under a lapsed fence does not either; a pass that may act does.
func TestSweepOnlyWhenActing(t *testing.T) {
	w := newFakeWorld()
	r := fakeReconciler(t, w, nil)
	swept := func() int {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.sweeps
	}
	if _, err := r.Plan(t.Context(), rev("c1", svc("a", "1", 0, 0))); err != nil {
		t.Fatal(err)
	}
	if n := swept(); n != 0 {
		t.Errorf("Plan swept %d times, want never", n)
	}
	fence := newFakeFence()
	fence.lapse()
	if _, err := r.Pass(WithFence(t.Context(), fence), rev("c1", svc("a", "1", 0, 0))); err != nil {
		t.Fatal(err)
	}
	if n := swept(); n != 0 {
		t.Errorf("a pass under a lapsed fence swept %d times, want never", n)
	}
	if _, err := r.Pass(t.Context(), rev("c1", svc("a", "1", 0, 0))); err != nil {
		t.Fatal(err)
	}
	if n := swept(); n != 1 {
		t.Errorf("a pass that may act swept %d times, want once", n)
	}
}

// TestBudgetRefusesBeforeAnythingChanges: a commit whose peak is over the budget is
// refused with the totals and the limit; nothing running changes, and the runner keeps
// the last admitted revision.
func TestBudgetRefusesBeforeAnythingChanges(t *testing.T) {
	w := newFakeWorld()
	r := fakeReconciler(t, w, func(c *Config) { c.Budget = Budget{MaxVMs: 10, MaxMemoryMiB: 4096, MaxCPUs: 64} })
	if _, err := r.Pass(t.Context(), rev("c1", svc("a", "1", 2, 0))); err != nil {
		t.Fatal(err)
	}
	before := w.mutationCount()

	big := svc("a", "2", 6, 0) // blue-green: 12 VMs, 1536 MiB at the peak
	_, err := r.Pass(t.Context(), rev("c2", big))
	var berr *BudgetError
	if !errors.As(err, &berr) || !strings.Contains(err.Error(), "12 VMs, more than --max-vms 10") {
		t.Fatalf("over-budget pass: %v, want a BudgetError naming 12 VMs and --max-vms 10", err)
	}
	if _, err := r.Plan(t.Context(), rev("c2", big)); !errors.As(err, &berr) {
		t.Errorf("drover plan of the over-budget commit: %v, want the BudgetError", err)
	}
	huge := svc("a", "2", 2, 0)
	huge.MemoryMiB = 1 << 30
	if err := r.Admit(rev("c3", huge)); err == nil || !strings.Contains(err.Error(), "more than --max-memory 4096 MiB") {
		t.Errorf("huge memory: %v, want refused naming --max-memory", err)
	}
	rolling := svc("a", "2", 9, 0)
	rolling.Update.Strategy, rolling.Update.MaxSurge = sources.StrategyRolling, 1
	if err := r.Admit(rev("c4", rolling)); err != nil {
		t.Errorf("rolling 9+1 within 10 VMs: %v, want admitted", err)
	}

	src := &revSource{}
	src.set(rev("c2", big))
	err = (&Runner{Source: src, Reconciler: r, Interval: time.Millisecond, Once: true}).Run(t.Context())
	if !errors.As(err, &berr) {
		t.Errorf("--once on an over-budget commit: %v, want the BudgetError", err)
	}
	if n := w.mutationCount(); n != before || w.count("a", "1") != 2 {
		t.Errorf("over-budget commit changed things: %v", w.mutations[before:])
	}
}

// TestForeignConsulServiceRefused: a service named like a Consul service with an
// instance of someone else is refused, nothing created, until the fleet file opts in.
func TestForeignConsulServiceRefused(t *testing.T) {
	w := newFakeWorld()
	w.foreign = []discovery.Instance{{ID: "vault-1", Service: "vault", Address: "10.1.2.3", Port: 8200}}
	r := fakeReconciler(t, w, nil)
	res, err := r.Pass(t.Context(), rev("c1", svc("vault", "1", 2, 0), svc("web", "1", 1, 0)))
	if err != nil {
		t.Fatal(err)
	}
	var ferr *ForeignServiceError
	if !errors.As(res.Err, &ferr) || ferr.Example.ID != "vault-1" || !strings.Contains(res.Err.Error(), "share_consul_service: true") {
		t.Fatalf("pass: %v, want a ForeignServiceError naming vault-1 and the opt-in", res.Err)
	}
	if n := w.count("vault", "1"); n != 0 {
		t.Errorf("vault VMs: %d, want none", n)
	}
	if n := w.count("web", "1"); n != 1 {
		t.Errorf("web VMs: %d, want 1 (another service is not held back)", n)
	}
	// Another fleet's Drover instance is foreign too.
	w.foreign = []discovery.Instance{{ID: "vault-x", Service: "vault", Tags: []string{Tag}, Meta: map[string]string{MetaFleet: "other"}}}
	if res, _ := r.Pass(t.Context(), rev("c1", svc("vault", "1", 2, 0))); !errors.As(res.Err, &ferr) {
		t.Errorf("instance of another fleet: %v, want refused", res.Err)
	}

	shared := svc("vault", "1", 2, 0)
	shared.ShareConsulService = true
	if res, err := r.Pass(t.Context(), rev("c2", shared)); err != nil || res.Err != nil || w.count("vault", "1") != 2 {
		t.Errorf("with share_consul_service: %v %v, %d VMs; want 2 created", err, res.Err, w.count("vault", "1"))
	}
}

// TestPausedIOErrorIsKept: a VM paused by an I/O error is reported and neither destroyed
// nor made again pass after pass.
func TestPausedIOErrorIsKept(t *testing.T) {
	w := newFakeWorld()
	r := fakeReconciler(t, w, nil)
	desired := rev("c1", svc("a", "1", 1, 0))
	if _, err := r.Pass(t.Context(), desired); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	var paused string
	for name, vm := range w.vms {
		vm.State = hypervisor.StatePausedIOError
		w.vms[name], paused = vm, name
	}
	w.mu.Unlock()
	for range 3 {
		res, err := r.Pass(t.Context(), desired)
		if err != nil || res.Err != nil {
			t.Fatal(err, res.Err)
		}
		if !strings.Contains(res.Plan.String(), paused+" is paused by an I/O error") {
			t.Errorf("plan does not report the paused VM:\n%s", res.Plan)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.vms[paused]; !ok || len(w.vms) != 2 {
		t.Errorf("VMs %v: want the paused one kept and one replacement", w.vms)
	}
}

// constSource makes every draw the same, so every VM name collides.
type constSource struct{}

func (constSource) Uint64() uint64 { return 12345678901234567 }

func TestVMNameGivesUp(t *testing.T) {
	r := &Reconciler{cfg: Config{Rand: rand.New(constSource{})}}
	taken := map[string]bool{}
	if _, err := r.vmName("web", "abcdef0123", taken); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := r.vmName("web", "abcdef0123", taken); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("second name from a constant source: nil error, want all taken")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("vmName loops forever when every name is taken")
	}
}

// fakeCollector records what Collect was told is in use.
type fakeCollector struct {
	calls int
	inUse func(string) bool
	grace time.Duration
}

func (c *fakeCollector) Collect(_ context.Context, inUse func(string) bool, grace time.Duration) ([]string, error) {
	c.calls++
	c.inUse, c.grace = inUse, grace
	return nil, nil
}

type mapHistory map[string]*sources.Fleet

func (h mapHistory) Fleet(_ context.Context, commit string) (*sources.Fleet, error) {
	f, ok := h[commit]
	if !ok {
		return nil, errors.New("no such commit")
	}
	return f, nil
}

// TestImageGCKeepsWhatVMsUse: the images of the current revision and of the revisions
// running VMs came from are in use; others are not. Only a converged pass collects.
func TestImageGCKeepsWhatVMsUse(t *testing.T) {
	w := newFakeWorld()
	gc := &fakeCollector{}
	old := svc("b", "old", 1, 0)
	old.Image.Kernel.SHA256 = strings.Repeat("b", 64)
	r := fakeReconciler(t, w, func(c *Config) {
		c.ImageGC = gc
		c.History = mapHistory{"c0": &sources.Fleet{Services: []sources.Service{old}}}
	})
	cur := svc("a", "1", 1, 0)
	if _, err := r.Pass(t.Context(), rev("c1", cur)); err != nil {
		t.Fatal(err)
	}
	if gc.calls != 0 {
		t.Fatalf("collected after a pass that acted")
	}
	if res, err := r.Pass(t.Context(), rev("c1", cur)); err != nil || res.Changed || res.Err != nil {
		t.Fatalf("converged pass: changed=%v err=%v %v", res.Changed, err, res.Err)
	}
	if gc.calls != 1 || gc.grace != 24*time.Hour {
		t.Fatalf("Collect calls %d grace %s, want 1 with the 24h default", gc.calls, gc.grace)
	}

	// A VM of service b, created from revision c0 (its newer revision held, say).
	r.gc.last = time.Time{}
	obs := Observed{VMs: []hypervisor.VM{{Name: "b-old", State: hypervisor.StateRunning, Meta: hypervisor.Metadata{Fleet: "test", Service: "b", Revision: "c0"}}}}
	r.collectImages(t.Context(), r.log, rev("c1", cur), obs)
	for digest, want := range map[string]bool{cur.Image.Kernel.SHA256: true, old.Image.Kernel.SHA256: true, strings.Repeat("c", 64): false} {
		if got := gc.inUse(digest); got != want {
			t.Errorf("inUse(%s…) = %v, want %v", digest[:8], got, want)
		}
	}
	// A VM whose revision cannot be read: no collection at all.
	r.gc.last = time.Time{}
	calls := gc.calls
	obs.VMs[0].Meta.Revision = "gone"
	r.collectImages(t.Context(), r.log, rev("c1", cur), obs)
	if gc.calls != calls {
		t.Error("collected although a VM's revision could not be read")
	}
}
