package reconciler_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/sources"
	"github.com/drover-dev/drover/testenv"
)

// The network tests run inside a network namespace of the test's own (testenv.InNetNS):
// a bridge at 198.18.0.1/24 with nothing beyond it. Consul, the guests and, for the
// libvirt driver, a libvirtd of the test's own all run there.

// staticNet is the network block of a service with static addresses from pool.
func staticNet(bridge, pool string) string {
	return fmt.Sprintf("mode: bridge\nbridge: %s\naddresses: %s\nprefix: 24\ngateway: %s", bridge, pool, testenv.NetGateway)
}

// reservations reads drover/addresses/ as address → VM.
func (w *world) reservations() map[string]string {
	w.t.Helper()
	kv, err := w.reg.KVList(w.t.Context(), "drover/addresses/")
	if err != nil {
		w.t.Fatalf("kv list: %v", err)
	}
	out := map[string]string{}
	for k, v := range kv {
		var res struct{ VM string }
		if err := json.Unmarshal(v, &res); err != nil {
			w.t.Fatalf("reservation %s: %v", k, err)
		}
		out[strings.TrimPrefix(k, "drover/addresses/")] = res.VM
	}
	return out
}

// expectOwnAddresses asserts every VM of service is registered at its own address in
// pool on the guest port, holds the reservation of it, and no two share one.
func (w *world) expectOwnAddresses(service, pool string) map[string]string {
	w.t.Helper()
	p, err := sources.ParsePool(pool)
	if err != nil {
		w.t.Fatal(err)
	}
	byVM := map[string]string{}
	ins := map[string]discovery.Instance{}
	for _, in := range w.instances(service) {
		ins[in.ID] = in
	}
	held := w.reservations()
	seen := map[string]string{}
	for _, vm := range w.vms(service) {
		pfx, err := netip.ParsePrefix(vm.Meta.Address)
		if err != nil || !p.Contains(pfx.Addr()) {
			w.t.Errorf("vm %s: address %q, want one of %s", vm.Name, vm.Meta.Address, pool)
			continue
		}
		a := pfx.Addr().String()
		if other, dup := seen[a]; dup {
			w.t.Errorf("address %s held by %s and %s", a, other, vm.Name)
		}
		seen[a] = vm.Name
		if vm.Meta.MAC != hypervisor.MACFor(vm.Name) {
			w.t.Errorf("vm %s: mac %q, want %s", vm.Name, vm.Meta.MAC, hypervisor.MACFor(vm.Name))
		}
		if in := ins[vm.Name]; in.Address != a || in.Port != testenv.GuestPort {
			w.t.Errorf("vm %s: registered at %s:%d, want its own %s:%d", vm.Name, in.Address, in.Port, a, testenv.GuestPort)
		}
		w.expectConsulReaches(vm.Name, fmt.Sprintf("http://%s:%d/healthz", a, testenv.GuestPort))
		if held[a] != vm.Name {
			w.t.Errorf("vm %s: reservation of %s held by %q", vm.Name, a, held[a])
		}
		byVM[vm.Name] = a
	}
	return byVM
}

// expectConsulReaches waits until Consul's own check of instance id has run against url
// and passed: its output names the URL it fetched and the guest's answer.
func (w *world) expectConsulReaches(id, url string) {
	w.t.Helper()
	want := "HTTP GET " + url + ": 200 OK"
	deadline := time.Now().Add(15 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + w.consul.Addr + "/v1/agent/checks")
		if err == nil {
			var checks map[string]struct{ ServiceID, Status, Output string }
			err = json.NewDecoder(resp.Body).Decode(&checks)
			resp.Body.Close()
			for _, c := range checks {
				if c.ServiceID == id {
					last = c.Status + ": " + c.Output
					if c.Status == "passing" && strings.Contains(c.Output, want) {
						return
					}
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	w.t.Errorf("consul's check of %s never passed against %s; last: %s", id, url, last)
}

// pass runs one pass over fleet yaml at commit and waits for it.
func (w *world) pass(commit, yaml string) (reconciler.Result, error) {
	return w.rec.Pass(w.t.Context(), sources.Revision{Commit: commit, Fleet: mustFleet(w.t.(*testing.T), yaml)})
}

// TestNetBridgeStatic: a service on a host bridge with a static pool, on both drivers:
// deployed and rolled out with each guest registered at its own address (Consul's
// HTTP check reaching it there), a missing bridge refused with nothing changed, a
// Drover frozen between reserving an address and creating the VM (as after a kill -9)
// leaking no address, and two fleets sharing one pool never colliding.
func TestNetBridgeStatic(t *testing.T) {
	testenv.InNetNS(t, testenv.NetNSOptions{Timeout: 15 * time.Minute}, func(t *testing.T, ns *testenv.NetNS) {
		testenv.NetLibvirtd(t)
		consul := testenv.Consul(t)
		for _, driver := range []string{"qemu", "libvirt"} {
			t.Run(driver, func(t *testing.T) { bridgeStatic(t, newWorldOn(t, driver, consul, ""), driver, ns) })
		}
	})
}

func bridgeStatic(t *testing.T, w *world, driver string, ns *testenv.NetNS) {
	svc := "e2e-static-" + driver
	const pool = "198.18.0.10-198.18.0.13"
	src := w.source(w.repo.URL())
	web := testenv.Service{Name: svc, Version: "1", Replicas: 1, Drain: 200 * time.Millisecond, Network: staticNet(ns.Bridge, pool)}

	started := time.Now()
	rev1 := w.commit(w.images.FleetYAML(web))
	if err := w.converge(src); err != nil {
		t.Fatalf("deploy v1: %v", err)
	}
	t.Logf("cost: deploy v1 took %s", time.Since(started).Round(time.Millisecond))
	w.expectServing(svc, "1", rev1, 1)
	w.expectOwnAddresses(svc, pool)

	started = time.Now()
	web.Version = "2"
	rev2 := w.commit(w.images.FleetYAML(web))
	if err := w.converge(src); err != nil {
		t.Fatalf("roll out v2: %v", err)
	}
	t.Logf("cost: v1 → v2 took %s", time.Since(started).Round(time.Millisecond))
	w.expectServing(svc, "2", rev2, 1)
	v2 := w.expectOwnAddresses(svc, pool)
	if held := w.reservations(); len(held) != 1 {
		t.Errorf("after the rollout: want v2's reservation only, got %v", held)
	}

	// A bridge that does not exist: a clear error, v2 untouched, no reservation kept.
	bad := web
	bad.Version, bad.Network = "3", staticNet("drnobr0", pool)
	badYAML := w.images.FleetYAML(bad)
	res, err := w.pass(w.commit(badYAML), badYAML)
	if err == nil {
		err = res.Err
	}
	if !errors.Is(err, hypervisor.ErrNoBridge) || !strings.Contains(err.Error(), `bridge "drnobr0"`) {
		t.Fatalf("missing bridge: want ErrNoBridge naming drnobr0, got %v", err)
	}
	w.expectServing(svc, "2", rev2, 1)
	if got := w.expectOwnAddresses(svc, pool); fmt.Sprint(got) != fmt.Sprint(v2) {
		t.Errorf("missing bridge changed the fleet: before %v, after %v", v2, got)
	}
	if held := w.reservations(); len(held) != 1 {
		t.Errorf("missing bridge: want v2's reservation only, got %v", held)
	}

	// A Drover frozen right after reserving an address, as if killed there: the next
	// Drover allocates around it and collects its reservation after 2×OpTimeout.
	frozen := make(chan struct{})
	reserved := make(chan struct{}, 1)
	stuck, err := reconciler.New(reconciler.Config{Hypervisor: w.hv, Registrar: w.reg, Health: w.reg, Reservations: w.reg, Images: w.cache, Log: w.log,
		Hook: func(point string) {
			if point == reconciler.PointAddressReserved {
				reserved <- struct{}{}
				<-frozen // never closed: this Drover is dead from here on
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	web.Version = "4"
	yaml4 := w.images.FleetYAML(web)
	rev4 := w.commit(yaml4)
	go stuck.Pass(context.Background(), sources.Revision{Commit: rev4, Fleet: mustFleet(t, yaml4)})
	<-reserved
	held := w.reservations()
	if len(held) != 2 {
		t.Fatalf("the frozen Drover should hold one reservation beside v2's, got %v", held)
	}
	const opTimeout = 3 * time.Second
	w.rec, err = reconciler.New(reconciler.Config{Hypervisor: w.hv, Registrar: w.reg, Health: w.reg, Reservations: w.reg, Images: w.cache, Log: w.log,
		History: historyOf(w), PruneDrain: 200 * time.Millisecond, OpTimeout: opTimeout})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.converge(src); err != nil {
		t.Fatalf("roll out v4 after the kill: %v", err)
	}
	w.expectServing(svc, "4", rev4, 1)
	w.expectOwnAddresses(svc, pool)
	deadline := time.Now().Add(2*opTimeout + 30*time.Second)
	for len(w.reservations()) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the dead Drover's reservation was never collected: %v", w.reservations())
		}
		if _, err := w.pass(rev4, yaml4); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Two fleets, each with its own Drover and state, on one pool.
	const shared = "198.18.0.20-198.18.0.23"
	var wg sync.WaitGroup
	others := make([]*world, 2)
	errs := make([]error, 2)
	for i := range others {
		others[i] = newWorldOn(t, driver, w.consul, fmt.Sprintf("fleet%d", i))
		o := others[i]
		s := testenv.Service{Name: fmt.Sprintf("e2e-shared%d-%s", i, driver), Version: "1", Replicas: 1, Network: staticNet(ns.Bridge, shared)}
		o.commit(o.images.FleetYAML(s))
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = o.converge(o.source(o.repo.URL()))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("two fleets on one pool: %v", err)
	}
	a := others[0].expectOwnAddresses(fmt.Sprintf("e2e-shared0-%s", driver), shared)
	b := others[1].expectOwnAddresses(fmt.Sprintf("e2e-shared1-%s", driver), shared)
	for _, x := range a {
		for _, y := range b {
			if x == y {
				t.Errorf("two fleets on one address %s", x)
			}
		}
	}
	for _, o := range others {
		o.commit(o.images.FleetYAML())
		if err := o.converge(o.source(o.repo.URL())); err != nil {
			t.Errorf("prune: %v", err)
		}
	}
	w.commit(w.images.FleetYAML())
	if err := w.converge(src); err != nil {
		t.Fatalf("prune: %v", err)
	}
	if held := w.reservations(); len(held) != 0 {
		t.Errorf("after pruning every fleet: want no reservation, got %v", held)
	}
}

// TestNetBridgeDHCP: a service on a bridge without a pool takes its address from
// dnsmasq, and Drover learns it from the host's neighbour table by the guest's MAC, on
// both drivers.
func TestNetBridgeDHCP(t *testing.T) {
	testenv.InNetNS(t, testenv.NetNSOptions{}, func(t *testing.T, ns *testenv.NetNS) {
		testenv.StartDnsmasq(t, ns)
		testenv.NetLibvirtd(t)
		consul := testenv.Consul(t)
		for _, driver := range []string{"qemu", "libvirt"} {
			t.Run(driver, func(t *testing.T) {
				dhcpService(t, newWorldOn(t, driver, consul, ""), "e2e-dhcp-"+driver, "mode: bridge\nbridge: "+ns.Bridge)
			})
		}
	})
}

// TestNetLibvirtNetwork: a service on a libvirt network (isolated, the test's own
// libvirtd) learns its guests' addresses from libvirt's DHCP leases.
func TestNetLibvirtNetwork(t *testing.T) {
	testenv.InNetNS(t, testenv.NetNSOptions{NoBridge: true}, func(t *testing.T, ns *testenv.NetNS) {
		uri := testenv.NetLibvirtd(t)
		testenv.DefineLibvirtNetwork(t, uri, "drnet")
		w := newWorld(t, "libvirt")
		dhcpService(t, w, "e2e-libvirtnet", "mode: network\nnetwork: drnet")

		// The direct driver refuses a libvirt network, changing nothing.
		q := newWorldOn(t, "qemu", w.consul, "q")
		yaml := q.images.FleetYAML(testenv.Service{Name: "e2e-refused", Version: "1", Replicas: 1, Network: "mode: network\nnetwork: drnet"})
		res, err := q.pass(q.commit(yaml), yaml)
		if err == nil {
			err = res.Err
		}
		if err == nil || !strings.Contains(err.Error(), "a libvirt network needs the libvirt driver") {
			t.Fatalf("qemu driver on a libvirt network: want a clear refusal, got %v", err)
		}
		if vms := q.vms("e2e-refused"); len(vms) != 0 {
			t.Errorf("refused, yet vms exist: %v", vms)
		}
	})
}

func dhcpService(t *testing.T, w *world, svc, network string) {
	src := w.source(w.repo.URL())
	web := testenv.Service{Name: svc, Version: "1", Replicas: 1, Drain: 200 * time.Millisecond, Network: network, CmdlineExtra: "drover.net=dhcp"}
	started := time.Now()
	rev1 := w.commit(w.images.FleetYAML(web))
	if err := w.converge(src); err != nil {
		t.Fatalf("deploy v1: %v", err)
	}
	t.Logf("cost: deploy v1 with dhcp took %s", time.Since(started).Round(time.Millisecond))
	w.expectServing(svc, "1", rev1, 1)
	dhcpRange, _ := sources.ParsePool("198.18.0.100-198.18.0.150")
	for _, in := range w.instances(svc) {
		a, err := netip.ParseAddr(in.Address)
		if err != nil || !dhcpRange.Contains(a) || in.Port != testenv.GuestPort {
			t.Errorf("instance %s registered at %s:%d, want a lease of %s on port %d", in.ID, in.Address, in.Port, dhcpRange, testenv.GuestPort)
			continue
		}
		w.expectConsulReaches(in.ID, fmt.Sprintf("http://%s:%d/healthz", a, testenv.GuestPort))
	}
	web.Version = "2"
	rev2 := w.commit(w.images.FleetYAML(web))
	if err := w.converge(src); err != nil {
		t.Fatalf("roll out v2: %v", err)
	}
	w.expectServing(svc, "2", rev2, 1)
	w.commit(w.images.FleetYAML())
	if err := w.converge(src); err != nil {
		t.Fatalf("prune: %v", err)
	}
}
