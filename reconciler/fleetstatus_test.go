package reconciler

import (
	"fmt"
	"testing"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/sources"
)

func phases(st FleetStatus) map[string]string {
	out := map[string]string{}
	for _, s := range st.Services {
		out[s.Name] = s.Phase
	}
	return out
}

func serviceOf(t *testing.T, st FleetStatus, name string) ServiceStatus {
	t.Helper()
	for _, s := range st.Services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no service %s in status %+v", name, st)
	return ServiceStatus{}
}

// TestFleetStatusPhases walks a service through every phase, with the desired revision
// set as the runner would, and checks what the status says at each.
func TestFleetStatusPhases(t *testing.T) {
	w := newFakeWorld()
	w.unhealthy = map[string]bool{"3": true}
	r := fakeReconciler(t, w, nil)
	runner := &Runner{}
	o := &Operator{Reconciler: r, Runner: runner}
	ctx := t.Context()
	bad := svc("web", "3", 2, 0)
	bad.Update.HealthyDeadline = 50 * time.Millisecond
	api := svc("api", "1", 1, 0)
	status := func(desired sources.Revision) FleetStatus {
		t.Helper()
		runner.setDesired(desired)
		st, err := o.FleetStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Revision != desired.Commit || !st.Leader || st.LastFetch.IsZero() {
			t.Errorf("status revision %q leader %v last fetch %v; want %q, leader, a fetch time", st.Revision, st.Leader, st.LastFetch, desired.Commit)
		}
		return st
	}
	expect := func(what string, st FleetStatus, want map[string]string) {
		t.Helper()
		if got := phases(st); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: phases %v, want %v", what, got, want)
		}
	}

	c1 := rev("c1", svc("web", "1", 2, 0), api)
	mustPass(t, r, c1)
	st := status(c1)
	expect("deployed", st, map[string]string{"web": PhaseConverged, "api": PhaseConverged})
	web := serviceOf(t, st, "web")
	if web.Version != "1" || web.Revision != "c1" || web.Replicas != 2 || web.Progress.Passing != 2 || web.Progress.Wanted != 2 || web.Progress.Started.IsZero() ||
		len(web.Versions) != 1 || web.Versions[0] != (VersionCount{Version: "1", Passing: 2, Total: 2}) || len(web.VMs) != 2 {
		t.Errorf("web deployed: %+v", web)
	}
	for _, vm := range web.VMs {
		if vm.Health != "passing" || vm.Address != "127.0.0.1:1" || vm.State != "running" || vm.Version != "1" || vm.Revision != "c1" {
			t.Errorf("web vm: %+v, want passing at 127.0.0.1:1, running, version 1 of c1", vm)
		}
	}

	c2 := rev("c2", svc("web", "2", 2, 0), api)
	st = status(c2)
	expect("new commit, not yet acted on", st, map[string]string{"web": PhaseRollingOut, "api": PhaseConverged})
	if web := serviceOf(t, st, "web"); web.Progress.Passing != 0 || web.Versions[0].Version != "1" {
		t.Errorf("web before its rollout: progress %+v versions %+v, want 0 new passing, only version 1", web.Progress, web.Versions)
	}
	mustPass(t, r, c2)

	c3 := rev("c3", bad, api)
	mustPass(t, r, c3)
	st = status(c3)
	expect("failed and held", st, map[string]string{"web": PhaseHeld, "api": PhaseConverged})
	if web := serviceOf(t, st, "web"); web.Held == nil || web.Held.Revision != "c3" || web.Held.Reason == "" || web.Held.At.IsZero() {
		t.Errorf("web held: %+v, want the hold of c3 with its reason and time", web.Held)
	}
	// A fixing commit ends the hold in the status, though the record stays in the store.
	c4 := rev("c4", svc("web", "4", 2, 0), api)
	st = status(c4)
	expect("fixing commit", st, map[string]string{"web": PhaseRollingOut, "api": PhaseConverged})
	if web := serviceOf(t, st, "web"); web.Held != nil {
		t.Errorf("web after a fixing commit: held %+v, want none", web.Held)
	}
	mustPass(t, r, c4)

	if err := o.Suspend(ctx, "api", "looking at it"); err != nil {
		t.Fatal(err)
	}
	st = status(c4)
	expect("suspended", st, map[string]string{"web": PhaseConverged, "api": PhaseSuspended})
	if api := serviceOf(t, st, "api"); api.Suspended == nil || api.Suspended.Reason != "looking at it" {
		t.Errorf("api suspended: %+v", api.Suspended)
	}
	if err := o.Resume(ctx, "api"); err != nil {
		t.Fatal(err)
	}
	st = status(rev("c5", svc("web", "4", 2, 0)))
	expect("removed from the fleet", st, map[string]string{"web": PhaseConverged, "api": PhasePruning})

	// Without a desired revision (a standby, a CLI): only what runs.
	st, err := (&Operator{Reconciler: r}).FleetStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	expect("no desired revision", st, map[string]string{"web": PhaseUnknown, "api": PhaseUnknown})
}

// BenchmarkFleetStatus: the status of a fleet of 1,000 VMs (10 services of 100, half
// of them mid-rollout), from fakes, so it measures Drover's own work.
func BenchmarkFleetStatus(b *testing.B) {
	w := newFakeWorld()
	var services []sources.Service
	for s := range 10 {
		desired := svc(fmt.Sprintf("svc%d", s), "2", 100, 0)
		old := svc(desired.Name, "1", 100, 0)
		services = append(services, desired)
		for i := range 100 {
			spec := desired
			if s%2 == 1 && i%2 == 0 {
				spec = old
			}
			name := fmt.Sprintf("%s-%d", desired.Name, i)
			w.vms[name] = hypervisor.VM{Name: name, State: hypervisor.StateRunning, Address: "127.0.0.1", Port: 1000 + i,
				Meta: hypervisor.Metadata{Fleet: "test", Service: spec.Name, Version: spec.Version, Revision: "c1", SpecHash: SpecHash(spec), Created: time.Now()}}
			w.instances[name] = discovery.Instance{ID: name, Service: spec.Name, Address: "127.0.0.1", Port: 1000 + i, Tags: []string{Tag},
				Meta: map[string]string{MetaFleet: "test", "version": spec.Version}, Status: discovery.StatusPassing}
		}
	}
	r, err := New(Config{Fleet: "test", Hypervisor: w, Registrar: w, Health: w, Images: w})
	if err != nil {
		b.Fatal(err)
	}
	runner := &Runner{}
	runner.setDesired(sources.Revision{Commit: "c2", Fleet: &sources.Fleet{Services: services}})
	o := &Operator{Reconciler: r, Runner: runner}
	b.ReportAllocs()
	for b.Loop() {
		st, err := o.FleetStatus(b.Context())
		if err != nil || len(st.Services) != 10 {
			b.Fatalf("status: %d services, %v", len(st.Services), err)
		}
	}
}
