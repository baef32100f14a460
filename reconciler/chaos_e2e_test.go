package reconciler_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/testenv"
)

// TestE2EChaos: with a chaos block, drover run terminates one healthy instance per
// interval through the drain path and the next pass replaces it; passing never drops
// below replicas - 1.
func TestE2EChaos(t *testing.T) {
	w := newWorld(t, "qemu")
	svc := testenv.Service{Name: "e2e-chaos", Version: "1", Replicas: 2, Drain: 200 * time.Millisecond, Chaos: "interval: 5s"}
	w.commit(w.images.FleetYAML(svc))
	src := w.source(w.repo.URL())
	if err := w.converge(src); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	first := w.vmNames(svc.Name)

	rec, err := reconciler.New(reconciler.Config{Hypervisor: w.hv, Registrar: w.reg, Health: w.reg, Images: w.cache, Log: w.log, Chaos: true})
	if err != nil {
		t.Fatal(err)
	}
	watch := w.watchPassing(svc.Name)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- (&reconciler.Runner{Source: src, Reconciler: rec, Interval: 500 * time.Millisecond, Log: w.log}).Run(ctx)
	}()
	// Wait, with a deadline, until one original VM was burnt and replaced.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		now := w.vmNames(svc.Name)
		n, _ := w.reg.PassingCount(t.Context(), svc.Name)
		replaced := 0
		for _, name := range first {
			if !slices.Contains(now, name) {
				replaced++
			}
		}
		if replaced >= 1 && len(now) == 2 && n == 2 {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no instance burnt and replaced within 2m: VMs %v (first %v), passing %d", now, first, n)
		}
		time.Sleep(200 * time.Millisecond) // poll interval of this deadline-bounded wait
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("runner: %v", err)
	}
	watch.stop()
	if watch.min.Load() < 1 {
		t.Errorf("passing dropped to %d during chaos, want >= replicas - 1 = 1", watch.min.Load())
	}
	t.Logf("chaos: min passing %d over %d samples", watch.min.Load(), watch.samples.Load())
}
