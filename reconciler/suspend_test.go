package reconciler

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/sources"
)

// TestSuspendedServiceIsLeftAlone: whatever a pass would do to a suspended service (a
// new commit, drift, a stopped VM, chaos, a prune, an orphaned registration) it does not
// do, and does once the service is resumed.
func TestSuspendedServiceIsLeftAlone(t *testing.T) {
	web1, web2 := svc("web", "1", 2, 0), svc("web", "2", 2, 0)
	chaotic := svc("web", "1", 2, 0)
	chaotic.Chaos = &sources.Chaos{Interval: time.Minute}
	api := svc("api", "1", 1, 0)
	setVM := func(w *fakeWorld, change func(*hypervisor.VM)) {
		w.mu.Lock()
		defer w.mu.Unlock()
		for name, vm := range w.vms {
			if vm.Meta.Service == "web" {
				change(&vm)
				w.vms[name] = vm
				return
			}
		}
	}
	cases := []struct {
		name   string
		before sources.Revision // deployed before the suspension
		change func(w *fakeWorld, now *time.Time)
		after  sources.Revision // passed over while suspended, then after Resume
		// resumed says what the pass after Resume must have done.
		resumed func(w *fakeWorld) bool
	}{
		{"new commit", rev("c1", web1, api), nil, rev("c2", web2, api),
			func(w *fakeWorld) bool { return w.count("web", "2") == 2 && w.count("web", "1") == 0 }},
		{"drift", rev("c1", web1, api), func(w *fakeWorld, _ *time.Time) {
			setVM(w, func(vm *hypervisor.VM) { vm.Drift = []string{"cpus 2, want 1"} })
		}, rev("c1", web1, api), func(w *fakeWorld) bool {
			return !slices.ContainsFunc(w.listVMs(), func(vm hypervisor.VM) bool { return len(vm.Drift) > 0 })
		}},
		{"stopped vm", rev("c1", web1, api), func(w *fakeWorld, _ *time.Time) {
			setVM(w, func(vm *hypervisor.VM) { vm.State = hypervisor.StateCrashed })
		}, rev("c1", web1, api), func(w *fakeWorld) bool {
			return !slices.ContainsFunc(w.listVMs(), func(vm hypervisor.VM) bool { return vm.State == hypervisor.StateCrashed })
		}},
		{"chaos", rev("c1", chaotic, api), func(_ *fakeWorld, now *time.Time) { *now = now.Add(time.Hour) }, rev("c1", chaotic, api),
			func(w *fakeWorld) bool { return w.count("web", "1") == 1 }},
		{"prune", rev("c1", web1, api), nil, rev("c2", api),
			func(w *fakeWorld) bool { return w.count("web", "1") == 0 }},
		{"orphan", rev("c1", web1, api), func(w *fakeWorld, _ *time.Time) {
			w.mu.Lock()
			w.instances["web-gone"] = discovery.Instance{ID: "web-gone", Service: "web", Tags: []string{Tag}, Meta: map[string]string{MetaFleet: "test"}}
			w.mu.Unlock()
		}, rev("c1", web1, api), func(w *fakeWorld) bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			_, ok := w.instances["web-gone"]
			return !ok
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
			w := newFakeWorld()
			r := fakeReconciler(t, w, func(c *Config) {
				c.Chaos = true
				c.Now = func() time.Time { return now }
			})
			mustPass(t, r, tc.before)
			if err := r.Suspend(t.Context(), "web", "investigating"); err != nil {
				t.Fatal(err)
			}
			if tc.change != nil {
				tc.change(w, &now)
			}
			before := w.webMutations()
			res := mustPass(t, r, tc.after)
			if got := w.webMutations(); !slices.Equal(got, before) {
				t.Errorf("suspended web was touched: mutations\n got %v\nwant %v", got, before)
			}
			if !strings.Contains(res.Plan.String(), "suspended since") {
				t.Errorf("plan does not say web is suspended:\n%s", res.Plan)
			}
			if tc.resumed(w) {
				t.Fatalf("the world already looks resumed while suspended")
			}
			if err := r.Resume(t.Context(), "web"); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				now = now.Add(time.Hour)
				mustPass(t, r, tc.after)
			}
			if !tc.resumed(w) {
				t.Errorf("after Resume and passes, web was not acted on: mutations %v", w.webMutations())
			}
			hist := must(r.History(t.Context(), "web", 0))
			if !slices.Contains(kinds(hist), EventSuspended) || !slices.Contains(kinds(hist), EventResumed) {
				t.Errorf("history of web %v, want suspended and resumed", kinds(hist))
			}
		})
	}
}

// webMutations are the mutating calls on web's VMs and instances so far.
func (w *fakeWorld) webMutations() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, m := range w.mutations {
		if strings.Contains(m, " web-") {
			out = append(out, m)
		}
	}
	return out
}

func (w *fakeWorld) listVMs() []hypervisor.VM {
	vms, _ := w.List(nil)
	return vms
}

func TestSuspendResumeRetryErrors(t *testing.T) {
	w := newFakeWorld()
	r := fakeReconciler(t, w, nil)
	ctx := t.Context()
	if err := r.Suspend(ctx, "Web!", ""); err == nil || !strings.Contains(err.Error(), "service name") {
		t.Errorf("Suspend of a bad name: %v, want a name error", err)
	}
	if err := r.Suspend(ctx, "web", "bad\x00reason"); err == nil {
		t.Errorf("Suspend with a control character in the reason: nil error")
	}
	if err := r.Retry(ctx, "web"); !errors.Is(err, ErrNotHeld) {
		t.Errorf("Retry without a hold: %v, want ErrNotHeld", err)
	}
	// Suspending twice, resuming twice: one event each.
	for range 2 {
		if err := r.Suspend(ctx, "web", "x"); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := r.Resume(ctx, "web"); err != nil {
			t.Fatal(err)
		}
	}
	if got := kinds(must(r.History(ctx, "", 0))); !slices.Equal(got, []EventKind{EventSuspended, EventResumed}) {
		t.Errorf("events of suspend twice, resume twice: %v, want one of each", got)
	}
	o := &Operator{Reconciler: r, Runner: &Runner{}}
	o.Runner.setDesired(rev("c1", svc("web", "1", 1, 0)))
	if err := o.Suspend(ctx, "wbe", ""); !errors.Is(err, ErrUnknownService) {
		t.Errorf("Operator.Suspend of a service not in the fleet: %v, want ErrUnknownService", err)
	}
	if err := o.Reconcile(ctx); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Reconcile with no loop running: %v, want ErrNotRunning", err)
	}
}
