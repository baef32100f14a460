package reconciler

import (
	"errors"
	"fmt"
	"testing"

	"github.com/drover-dev/drover/hypervisor"
)

// A create the driver refuses as an invalid spec (a disk_size below the golden disk)
// fails the revision and holds it, even though no VM was created: the same spec would
// be refused on every pass. An operational create error is retried instead.
func TestInvalidSpecHoldsRevision(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantHeld bool
	}{
		{"invalid spec", fmt.Errorf("create vm x: %w: disk_size 1GiB is below the golden disk's 2GiB", hypervisor.ErrInvalidSpec), true},
		{"libvirtd down", errFake, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newFakeWorld()
			w.createErr = tt.err
			r := fakeReconciler(t, w, nil)
			r1 := rev("c1", svc("a", "1", 2, 0))

			res, err := r.Pass(t.Context(), r1)
			if err != nil {
				t.Fatal(err)
			}
			var rerr *RolloutError
			if got := errors.As(res.Err, &rerr); got != tt.wantHeld {
				t.Fatalf("first pass: RolloutError %v (err %v), want %v", got, res.Err, tt.wantHeld)
			}
			if tt.wantHeld && !errors.Is(rerr, hypervisor.ErrInvalidSpec) {
				t.Errorf("rollout error %v does not carry the driver's ErrInvalidSpec", rerr)
			}
			creates := w.mutationCount()

			res, err = r.Pass(t.Context(), r1)
			if err != nil {
				t.Fatal(err)
			}
			var held *HeldError
			if got := errors.As(res.Err, &held); got != tt.wantHeld {
				t.Fatalf("second pass: HeldError %v (err %v), want %v", got, res.Err, tt.wantHeld)
			}
			if tt.wantHeld && w.mutationCount() != creates {
				t.Errorf("held revision tried again: %d creates, want %d", w.mutationCount(), creates)
			}
			if !tt.wantHeld && w.mutationCount() == creates {
				t.Errorf("operational error not retried: %d creates", w.mutationCount())
			}
			if n := len(w.vms); n != 0 {
				t.Errorf("%d VMs exist, want none", n)
			}
		})
	}
}
