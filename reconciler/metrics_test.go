package reconciler

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/drover-dev/drover/hypervisor"
)

// recordedPass and recordedGate are what a recordingMetrics was told.
type recordedPass struct {
	d   time.Duration
	err error
}

type recordedGate struct {
	service string
	d       time.Duration
	passed  bool
}

// recordingMetrics records every observation, for the tests to compare.
type recordingMetrics struct {
	mu     sync.Mutex
	passes []recordedPass
	gates  []recordedGate
}

var (
	_ PassMetrics = (*recordingMetrics)(nil)
	_ GateMetrics = (*recordingMetrics)(nil)
)

func (m *recordingMetrics) ObservePass(d time.Duration, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.passes = append(m.passes, recordedPass{d, err})
}

func (m *recordingMetrics) ObserveGateWait(service string, d time.Duration, passed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gates = append(m.gates, recordedGate{service, d, passed})
}

func (m *recordingMetrics) recorded() ([]recordedPass, []recordedGate) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.passes), slices.Clone(m.gates)
}

// failingList is a hypervisor that cannot list its VMs: every pass fails.
type failingList struct{ *fakeWorld }

func (failingList) List(context.Context) ([]hypervisor.VM, error) { return nil, errFake }

// TestRunnerObservesPasses: each pass is reported once, with its duration and its
// failure; a pass that reports only a held revision is not a failure.
func TestRunnerObservesPasses(t *testing.T) {
	t.Run("converges", func(t *testing.T) {
		m := &recordingMetrics{}
		runner := &Runner{Source: &revSource{rev: rev("c1", svc("a", "1", 1, 0))}, Reconciler: fakeReconciler(t, newFakeWorld(), nil),
			Interval: time.Millisecond, Once: true, Metrics: m}
		if err := runner.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		passes, _ := m.recorded()
		// Boot, then confirm: at least two passes, none failed.
		if len(passes) < 2 {
			t.Fatalf("passes reported: %d, want at least 2", len(passes))
		}
		for i, p := range passes {
			if p.err != nil || p.d <= 0 {
				t.Errorf("pass %d: got duration %s, err %v; want > 0 and nil", i, p.d, p.err)
			}
		}
	})
	t.Run("fails", func(t *testing.T) {
		m := &recordingMetrics{}
		w := newFakeWorld()
		r := fakeReconciler(t, w, func(c *Config) { c.Hypervisor = failingList{w} })
		runner := &Runner{Source: &revSource{rev: rev("c1", svc("a", "1", 1, 0))}, Reconciler: r, Interval: time.Millisecond, Once: true, Metrics: m}
		if err := runner.Run(t.Context()); !errors.Is(err, errFake) {
			t.Fatalf("Run: got %v, want %v", err, errFake)
		}
		passes, _ := m.recorded()
		if len(passes) != 1 || !errors.Is(passes[0].err, errFake) {
			t.Fatalf("passes reported: got %+v, want one failing with %v", passes, errFake)
		}
	})
	t.Run("held", func(t *testing.T) {
		m := &recordingMetrics{}
		w := newFakeWorld()
		w.unhealthy = map[string]bool{"1": true}
		s := svc("a", "1", 1, 0)
		s.Update.HealthyDeadline = 50 * time.Millisecond
		runner := &Runner{Source: &revSource{rev: rev("c1", s)}, Reconciler: fakeReconciler(t, w, nil), Interval: time.Millisecond, Metrics: m}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- runner.Run(ctx) }()
		// The pass after the rollout failed reports it; those after it, the hold.
		var failed, heldAfter bool
		eventually(t, "a failing pass, then a held one", func() bool {
			passes, _ := m.recorded()
			failed, heldAfter = false, false
			for _, p := range passes {
				var rerr *RolloutError
				switch {
				case errors.As(p.err, &rerr):
					failed = true
				case p.err == nil && failed:
					heldAfter = true
				}
			}
			return failed && heldAfter
		})
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if st := runner.Status(); st.Error == "" {
			t.Errorf("status %+v: want the hold named", st)
		}
	})
}

// TestRolloutObservesGate: a gate that passes and one that times out are reported with
// the service and the wait; one cut by a signal, and a scale-down, are not.
func TestRolloutObservesGate(t *testing.T) {
	const deadline = 200 * time.Millisecond
	tests := []struct {
		name      string
		unhealthy bool
		cancel    bool // cancel the pass's context while the gate waits
		want      []recordedGate
	}{
		{name: "passes", want: []recordedGate{{service: "web", passed: true}}},
		{name: "deadline", unhealthy: true, want: []recordedGate{{service: "web", d: deadline, passed: false}}},
		{name: "cancelled", unhealthy: true, cancel: true, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &recordingMetrics{}
			w := newFakeWorld()
			if tt.unhealthy {
				w.unhealthy = map[string]bool{"1": true}
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			r := fakeReconciler(t, w, func(c *Config) {
				c.Metrics = m
				c.Hook = func(p string) {
					if p == PointGateWaiting && tt.cancel {
						cancel()
					}
				}
			})
			s := svc("web", "1", 2, 0)
			s.Update.HealthyDeadline = deadline
			if tt.cancel {
				s.Update.HealthyDeadline = time.Minute
			}
			if _, err := r.Start(ctx, rev("c1", s)); err != nil {
				t.Fatal(err)
			}
			r.Wait()
			_, gates := m.recorded()
			if len(gates) != len(tt.want) {
				t.Fatalf("gates reported: got %+v, want %+v", gates, tt.want)
			}
			for i, g := range gates {
				want := tt.want[i]
				// A passing gate is quick; a failed one waited the whole deadline.
				okWait := g.d >= want.d && g.d < deadline+5*time.Second
				if want.passed {
					okWait = g.d > 0 && g.d < deadline
				}
				if g.service != want.service || g.passed != want.passed || !okWait {
					t.Errorf("gate %d: got %+v, want %+v (wait at least %s)", i, g, want, want.d)
				}
			}
			if tt.name != "passes" {
				return
			}
			// Scaled down to 1: the gate waits for the VM that stays, no new VM; not reported.
			s.Replicas = 1
			if _, err := r.Start(ctx, rev("c1", s)); err != nil {
				t.Fatal(err)
			}
			r.Wait()
			if _, gates := m.recorded(); len(gates) != 1 {
				t.Errorf("after a scale-down: gates reported %+v, want only the first", gates)
			}
		})
	}
}
