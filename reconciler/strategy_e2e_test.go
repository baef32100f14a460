package reconciler_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/testenv"
)

// vmCountWatch polls the driver like the passing watcher polls Consul, recording the
// most VMs of a service that existed at once.
type vmCountWatch struct {
	max  atomic.Int64
	stop func()
}

func (w *world) watchVMs(service string) *vmCountWatch {
	vw := &vmCountWatch{}
	vw.stop = every(100*time.Millisecond, func(ctx context.Context) {
		vms, err := w.hv.List(ctx)
		if err != nil {
			return
		}
		n := 0
		for _, vm := range vms {
			if vm.Meta.Service == service {
				n++
			}
		}
		if int64(n) > vw.max.Load() {
			vw.max.Store(int64(n))
		}
	})
	return vw
}

func TestE2EStrategies(t *testing.T) {
	tests := []struct {
		name        string
		svc         testenv.Service
		minPassing  int64 // replicas - max_unavailable
		maxVMs      int64 // replicas + max_surge (canary: replicas + canary, then blue-green)
		canaryFails int64 // VMs of a failing version ever created at once
	}{
		{name: "rolling surge 1", svc: testenv.Service{Strategy: "rolling", MaxSurge: 1, MaxUnavailable: 0}, minPassing: 2, maxVMs: 3},
		{name: "rolling unavailable 1", svc: testenv.Service{Strategy: "rolling", MaxSurge: 0, MaxUnavailable: 1}, minPassing: 1, maxVMs: 2},
		{name: "canary 1", svc: testenv.Service{Strategy: "canary", Canary: 1}, minPassing: 2, maxVMs: 4, canaryFails: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, "qemu")
			src := w.source(w.repo.URL())
			svc := tt.svc
			svc.Name, svc.Version, svc.Replicas, svc.Drain = "e2e-strategy", "1", 2, 200*time.Millisecond
			w.commit(w.images.FleetYAML(svc))
			if err := w.converge(src); err != nil {
				t.Fatalf("deploy v1: %v", err)
			}

			passing, vms := w.watchPassing(svc.Name), w.watchVMs(svc.Name)
			svc.Version = "2"
			rev2 := w.commit(w.images.FleetYAML(svc))
			if err := w.converge(src); err != nil {
				t.Fatalf("roll out v2: %v", err)
			}
			w.expectServing(svc.Name, "2", rev2, 2)
			passing.stop()
			vms.stop()
			t.Logf("%s: min passing %d (floor %d), max VMs %d (bound %d)", tt.name, passing.min.Load(), tt.minPassing, vms.max.Load(), tt.maxVMs)
			if passing.min.Load() < tt.minPassing {
				t.Errorf("passing dropped to %d, below replicas - max_unavailable = %d", passing.min.Load(), tt.minPassing)
			}
			if vms.max.Load() > tt.maxVMs {
				t.Errorf("%d VMs at once, above the bound %d", vms.max.Load(), tt.maxVMs)
			}

			// A version that never becomes healthy is rolled back under every strategy.
			vms = w.watchVMs(svc.Name)
			bad := svc
			bad.Version, bad.Unhealthy, bad.HealthyDeadline = "3", true, 10*time.Second
			w.commit(w.images.FleetYAML(bad))
			err := w.converge(src)
			vms.stop()
			var rerr *reconciler.RolloutError
			if !errors.As(err, &rerr) || !rerr.RolledBack {
				t.Fatalf("v3: got %v, want a rolled back RolloutError", err)
			}
			if tt.canaryFails > 0 && vms.max.Load() > tt.canaryFails {
				t.Errorf("canary: %d VMs at once while the canary failed, want at most %d (only the canary is created)", vms.max.Load(), tt.canaryFails)
			}
			// Held: the next passes restore v2 to full replicas (rolling may have
			// retired a v2 VM before v3 failed) and then report the held revision.
			err = w.converge(src)
			var held *reconciler.HeldError
			if !errors.As(err, &held) {
				t.Fatalf("after the rollback: got %v, want HeldError", err)
			}
			w.expectServing(svc.Name, "2", "", 2)
		})
	}
}
