package reconciler_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/testenv"
)

// TestE2EForeignConsulServiceRefused: another team's "vault" instance is registered in
// Consul; a commit declaring a service of that name is refused, with the instance named
// and the opt-in given, and nothing is created or registered.
func TestE2EForeignConsulServiceRefused(t *testing.T) {
	w := newWorld(t, "qemu")
	const name = "e2e-vault"
	foreign := discovery.Registration{ID: "vault-prod-1", Service: name, Address: "127.0.0.1", Port: 8200,
		Check: discovery.Check{TCP: true, Interval: time.Minute, Timeout: time.Second}}
	if err := w.reg.Register(t.Context(), foreign); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.reg.Deregister(t.Context(), foreign.ID) })

	w.commit(w.images.FleetYAML(testenv.Service{Name: name, Version: "1", Replicas: 1}))
	err := w.converge(w.source(w.repo.URL()))
	var ferr *reconciler.ForeignServiceError
	if !errors.As(err, &ferr) {
		t.Fatalf("converge: %v, want a ForeignServiceError", err)
	}
	for _, want := range []string{name, "vault-prod-1", "share_consul_service: true"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if vms := w.vmNames(name); len(vms) != 0 {
		t.Errorf("VMs of the refused service: %v, want none", vms)
	}
	instances, err := w.reg.ServiceInstances(t.Context(), name)
	if err != nil || len(instances) != 1 || instances[0].ID != foreign.ID {
		t.Errorf("consul service %s: %+v, %v; want only the foreign instance", name, instances, err)
	}
}

// TestE2EOverBudgetRefused: a commit whose rollout peak exceeds --max-vms is refused
// before anything is created, with the totals and the limit named.
func TestE2EOverBudgetRefused(t *testing.T) {
	w := newWorld(t, "qemu")
	rec, err := reconciler.New(reconciler.Config{Hypervisor: w.hv, Registrar: w.reg, Health: w.reg, Images: w.cache, Log: w.log,
		Budget: reconciler.Budget{MaxVMs: 3}})
	if err != nil {
		t.Fatal(err)
	}
	w.rec = rec
	const name = "e2e-budget"
	w.commit(w.images.FleetYAML(testenv.Service{Name: name, Version: "1", Replicas: 2})) // blue-green: 4 at the peak
	err = w.converge(w.source(w.repo.URL()))
	var berr *reconciler.BudgetError
	if !errors.As(err, &berr) || !strings.Contains(err.Error(), "4 VMs, more than --max-vms 3") {
		t.Fatalf("converge: %v, want a BudgetError naming 4 VMs and --max-vms 3", err)
	}
	if vms := w.vmNames(name); len(vms) != 0 {
		t.Errorf("VMs of the refused commit: %v, want none", vms)
	}
	if in := w.instances(name); len(in) != 0 {
		t.Errorf("consul instances of the refused commit: %v, want none", in)
	}
}
