package reconciler_test

import (
	"slices"
	"testing"
	"time"

	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/testenv"
)

// TestE2EEventsOfARollout: a real VM's deploy and prune leave their events in Consul, in
// order, for this Drover and for a restarted one; the first VM's events name it.
func TestE2EEventsOfARollout(t *testing.T) {
	w := newWorld(t, "qemu")
	src := w.source(w.repo.URL())
	web := testenv.Service{Name: "e2e-events", Version: "1", Replicas: 1, Drain: 100 * time.Millisecond}
	rev1 := w.commit(w.images.FleetYAML(web))
	if err := w.converge(src); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	vm := w.vmNames(web.Name)
	w.commit(w.images.FleetYAML())
	if err := w.converge(src); err != nil {
		t.Fatalf("prune: %v", err)
	}
	want := []reconciler.EventKind{reconciler.EventRolloutStarted, reconciler.EventVMCreated, reconciler.EventRolloutSucceeded, reconciler.EventVMRetired}
	for _, rec := range []*reconciler.Reconciler{w.rec, w.newReconciler()} {
		hist, err := rec.History(t.Context(), web.Name, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []reconciler.EventKind
		for i, ev := range hist {
			got = append(got, ev.Kind)
			if i > 0 && ev.Seq != hist[i-1].Seq+1 {
				t.Errorf("event %d: seq %d after %d, want consecutive", i, ev.Seq, hist[i-1].Seq)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("history of %s: %v, want %v", web.Name, got, want)
		}
		created, retired := hist[1], hist[3]
		if !slices.Equal(created.VMs, vm) || created.Revision != rev1 || created.Version != "1" || !slices.Equal(retired.VMs, vm) {
			t.Errorf("vm events %+v and %+v, want both naming %v at %s version 1", created, retired, vm, rev1)
		}
	}
}
