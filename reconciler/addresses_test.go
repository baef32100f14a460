package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/sources"
)

// memKV is Consul KV in memory, with the check-and-set on a new key Consul has.
type memKV struct {
	mu sync.Mutex
	kv map[string][]byte
}

func newMemKV() *memKV { return &memKV{kv: map[string][]byte{}} }

func (m *memKV) KVCreate(_ context.Context, key string, value []byte) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.kv[key]; ok {
		return false, nil
	}
	m.kv[key] = value
	return true, nil
}

func (m *memKV) KVDelete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.kv, key)
	return nil
}

func (m *memKV) KVList(_ context.Context, prefix string) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range m.kv {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out, nil
}

// holders maps each reserved address to the VM holding it.
func (m *memKV) holders(t *testing.T) map[string]string {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]string{}
	for k, v := range m.kv {
		var res reservation
		if err := json.Unmarshal(v, &res); err != nil {
			t.Fatalf("reservation %s: %v", k, err)
		}
		out[strings.TrimPrefix(k, addressPrefix)] = res.VM
	}
	return out
}

func discoveryInstance(id, addr string) discovery.Instance {
	return discovery.Instance{ID: id, Service: "other", Address: addr, Port: 80, Tags: []string{Tag}, Status: discovery.StatusPassing}
}

func staticSvc(name, version string, n int, pool string) sources.Service {
	s := svc(name, version, n, 0)
	s.Network = sources.Network{Mode: "bridge", Bridge: "br0", Addresses: pool, Prefix: 24, Gateway: "198.18.0.1"}
	return s
}

// addressesOf checks that no two VMs of the world share an address and returns them
// by VM.
func addressesOf(t *testing.T, w *fakeWorld) map[string]string {
	t.Helper()
	vms, _ := w.List(context.Background())
	byVM, seen := map[string]string{}, map[string]string{}
	for _, vm := range vms {
		a := vm.Meta.Address
		if other, dup := seen[a]; dup && a != "" {
			t.Fatalf("address %s held by %s and %s", a, other, vm.Name)
		}
		seen[a], byVM[vm.Name] = vm.Name, a
	}
	return byVM
}

func TestStaticAddressesDeployAndRollout(t *testing.T) {
	w, kv := newFakeWorld(), newMemKV()
	r := fakeReconciler(t, w, func(c *Config) { c.Reservations = kv })
	ctx := context.Background()
	for _, version := range []string{"v1", "v2"} {
		if _, err := r.Pass(ctx, rev("c-"+version, staticSvc("web", version, 2, "198.18.0.10-198.18.0.13"))); err != nil {
			t.Fatal(err)
		}
		byVM := addressesOf(t, w)
		if len(byVM) != 2 {
			t.Fatalf("%s: want 2 vms, got %v", version, byVM)
		}
		held := kv.holders(t)
		for vm, a := range byVM {
			pfx := netip.MustParsePrefix(a)
			if pfx.Bits() != 24 || held[pfx.Addr().String()] != vm {
				t.Errorf("%s: vm %s has %s; reservations %v", version, vm, a, held)
			}
		}
		if len(held) != 2 {
			t.Errorf("%s: want the 2 current vms' reservations only, got %v", version, held)
		}
	}
}

func TestStaticAddressSpec(t *testing.T) {
	s := staticSvc("web", "v1", 1, "198.18.0.10-198.18.0.13")
	s.Network.DNS = []string{"198.18.0.1"}
	spec := withNetwork(hypervisor.Spec{Name: "web-1", Kernel: "/k", Cmdline: "console=ttyS0", Seed: &hypervisor.Seed{MetaData: []byte("m")},
		Network: hypervisor.Network{Mode: "bridge", Bridge: "br0"}}, s, netip.MustParsePrefix("198.18.0.11/24"))
	if want := "console=ttyS0 ip=198.18.0.11::198.18.0.1:255.255.255.0::eth0:off"; spec.Cmdline != want {
		t.Errorf("cmdline: want %q, got %q", want, spec.Cmdline)
	}
	if spec.Network.MAC != hypervisor.MACFor("web-1") || spec.Meta.MAC != spec.Network.MAC {
		t.Errorf("mac: want %s in the network and metadata, got %q and %q", hypervisor.MACFor("web-1"), spec.Network.MAC, spec.Meta.MAC)
	}
	if spec.Meta.Address != "198.18.0.11/24" || !strings.Contains(string(spec.Seed.NetworkConfig), `"198.18.0.11/24"`) {
		t.Errorf("address: metadata %q, network-config %s", spec.Meta.Address, spec.Seed.NetworkConfig)
	}
	dhcp := withNetwork(hypervisor.Spec{Name: "web-2", Network: hypervisor.Network{Mode: "bridge", Bridge: "br0"}}, svc("web", "v1", 1, 0), netip.Prefix{})
	if dhcp.Network.MAC == "" || dhcp.Network.Address != "" || dhcp.Cmdline != "" {
		t.Errorf("dhcp: want a mac and no address, got %+v, cmdline %q", dhcp.Network, dhcp.Cmdline)
	}
}

// A disk image without cloud_init still learns its static address: it gets a seed with
// the network-config, and the meta-data names the address.
func TestStaticAddressDiskImageGetsSeed(t *testing.T) {
	s := staticSvc("web", "v1", 1, "198.18.0.10-198.18.0.13")
	s.Image = sources.Image{Disk: &sources.Artifact{URL: "file:///d", SHA256: strings.Repeat("d", 64)}}
	spec := withSeed(s, withNetwork(hypervisor.Spec{Name: "web-1", Disk: "/d", Network: hypervisor.Network{Mode: "bridge", Bridge: "br0"}},
		s, netip.MustParsePrefix("198.18.0.12/24")))
	if spec.Seed == nil {
		t.Fatal("disk image with a static address: want a seed, got none")
	}
	if !strings.Contains(string(spec.Seed.NetworkConfig), `"198.18.0.12/24"`) || !strings.Contains(string(spec.Seed.MetaData), `"address":"198.18.0.12"`) || spec.Seed.UserData != nil {
		t.Errorf("seed: want network-config and meta-data naming 198.18.0.12 and no user-data, got network-config %s meta-data %s user-data %q",
			spec.Seed.NetworkConfig, spec.Seed.MetaData, spec.Seed.UserData)
	}
	if spec.Cmdline != "" {
		t.Errorf("disk image: want no kernel ip= argument, got cmdline %q", spec.Cmdline)
	}
}

func TestStaticAddressesTwoFleetsOnePool(t *testing.T) {
	w, kv := newFakeWorld(), newMemKV()
	ctx := context.Background()
	var rs []*Reconciler
	for _, fleet := range []string{"blue", "green"} {
		rs = append(rs, fakeReconciler(t, w, func(c *Config) { c.Fleet, c.Reservations = fleet, kv }))
	}
	// Both at once: the check-and-set, not the lock inside one Drover, keeps them apart.
	var wg sync.WaitGroup
	errs := make([]error, len(rs))
	for i, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = r.Pass(ctx, rev("c1", staticSvc(fmt.Sprintf("web%d", i), "v1", 2, "198.18.0.10-198.18.0.17")))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if got := addressesOf(t, w); len(got) != 4 {
		t.Fatalf("want 4 vms with 4 addresses, got %v", got)
	}
}

func TestStaticAddressExhaustedAllOrNothing(t *testing.T) {
	w, kv := newFakeWorld(), newMemKV()
	ctx := context.Background()
	// Three of four addresses held by others' reservations: a step of 2 VMs cannot be
	// served, and must not create the one it could.
	for _, a := range []string{"198.18.0.10", "198.18.0.11", "198.18.0.12"} {
		raw, _ := json.Marshal(reservation{VM: "someone-" + a, Fleet: "other", At: time.Now()})
		kv.kv[addressPrefix+a] = raw
	}
	r := fakeReconciler(t, w, func(c *Config) { c.Reservations = kv })
	res, err := r.Pass(ctx, rev("c1", staticSvc("web", "v1", 2, "198.18.0.10-198.18.0.13")))
	if err == nil {
		err = res.Err
	}
	if !errors.Is(err, ErrPoolExhausted) || !strings.Contains(err.Error(), "198.18.0.10-198.18.0.13") {
		t.Fatalf("want ErrPoolExhausted naming the pool, got %v", err)
	}
	if n := w.mutationCount(); n != 0 {
		t.Errorf("want no mutation, got %d: %v", n, w.mutations)
	}
	if held := kv.holders(t); len(held) != 3 {
		t.Errorf("want the 3 others' reservations only, got %v", held)
	}
}

func TestStaticAddressTakenByVMOrConsul(t *testing.T) {
	vms := []hypervisor.VM{{Name: "a", Meta: hypervisor.Metadata{Address: "198.18.0.10/24"}}, {Name: "b", Address: "198.18.0.11"}}
	w := newFakeWorld()
	for _, vm := range vms {
		w.vms[vm.Name] = vm
	}
	w.instances["c"] = discoveryInstance("c", "198.18.0.12")
	kv := newMemKV()
	r := fakeReconciler(t, w, func(c *Config) { c.Reservations = kv })
	got, err := r.reserveAddresses(context.Background(), staticSvc("web", "v1", 1, "198.18.0.10-198.18.0.13"), []string{"web-x"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "198.18.0.13/24"; len(got) != 1 || got[0].String() != want {
		t.Errorf("want %s (the only address no vm, instance or reservation holds), got %v", want, got)
	}
}

func TestCollectReservations(t *testing.T) {
	w, kv := newFakeWorld(), newMemKV()
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	put := func(a, vm, fleet string, age time.Duration) {
		raw, _ := json.Marshal(reservation{VM: vm, Fleet: fleet, At: now.Add(-age)})
		kv.kv[addressPrefix+a] = raw
	}
	put("198.18.0.10", "gone-old", "test", 5*time.Minute)   // collected
	put("198.18.0.11", "gone-young", "test", 3*time.Minute) // younger than 2×OpTimeout
	put("198.18.0.12", "gone-other", "other", time.Hour)    // another fleet's
	put("198.18.0.13", "alive", "test", time.Hour)          // its VM exists
	w.vms["alive"] = hypervisor.VM{Name: "alive", State: hypervisor.StateRunning}
	put("198.18.0.14", "registered", "test", time.Hour) // its Consul instance exists
	w.instances["registered"] = discoveryInstance("registered", "198.18.0.14")
	r := fakeReconciler(t, w, func(c *Config) {
		c.Reservations = kv
		c.Now = func() time.Time { return now }
		c.OpTimeout = 2 * time.Minute
	})
	r.collectReservations(context.Background(), r.log)
	var left []string
	for a := range kv.holders(t) {
		left = append(left, a)
	}
	slices.Sort(left)
	want := []string{"198.18.0.11", "198.18.0.12", "198.18.0.13", "198.18.0.14"}
	if !slices.Equal(left, want) {
		t.Errorf("reservations left:\nwant %v\ngot  %v", want, left)
	}
}

func TestAddressDrift(t *testing.T) {
	s := staticSvc("web", "v1", 1, "198.18.0.10-198.18.0.13")
	tests := []struct {
		name string
		meta hypervisor.Metadata
		want string
	}{
		{"in the pool", hypervisor.Metadata{MAC: hypervisor.MACFor("web-1"), Address: "198.18.0.10/24"}, ""},
		{"outside the pool", hypervisor.Metadata{MAC: hypervisor.MACFor("web-1"), Address: "198.18.0.50/24"}, "network: address 198.18.0.50/24 is outside network.addresses 198.18.0.10-198.18.0.13/24"},
		{"mac changed", hypervisor.Metadata{MAC: "52:54:00:00:00:01", Address: "198.18.0.10/24"}, "network: mac 52:54:00:00:00:01, want " + hypervisor.MACFor("web-1") + " (derived from the vm's name)"},
		{"no address", hypervisor.Metadata{MAC: hypervisor.MACFor("web-1")}, `network: no static address recorded (""), want one of 198.18.0.10-198.18.0.13`},
	}
	for _, tc := range tests {
		if got := addressDrift(s, hypervisor.VM{Name: "web-1", Meta: tc.meta}); got != tc.want {
			t.Errorf("%s:\nwant %q\ngot  %q", tc.name, tc.want, got)
		}
	}
}

// BenchmarkAllocateAddress: one address from a 250-address pool of which 200 are held
// (100 by VMs on the host, 50 by Consul instances, 50 by reservations). Target < 1 ms.
func BenchmarkAllocateAddress(b *testing.B) {
	w, kv := newFakeWorld(), newMemKV()
	pool := "198.18.0.2-198.18.0.251"
	p, _ := sources.ParsePool(pool)
	for i := range 200 {
		a := p.At(i * 5 / 4).String()
		switch {
		case i < 100:
			w.vms[fmt.Sprintf("vm%d", i)] = hypervisor.VM{Name: fmt.Sprintf("vm%d", i), Meta: hypervisor.Metadata{Address: a + "/24"}}
		case i < 150:
			w.instances[fmt.Sprintf("in%d", i)] = discoveryInstance(fmt.Sprintf("in%d", i), a)
		default:
			raw, _ := json.Marshal(reservation{VM: "r", Fleet: "x", At: time.Now()})
			kv.kv[addressPrefix+a] = raw
		}
	}
	cfg := Config{Fleet: "test", Hypervisor: w, Registrar: w, Health: w, Images: w, Reservations: kv}
	r, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	s := staticSvc("web", "v1", 1, pool)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got, err := r.reserveAddresses(ctx, s, []string{fmt.Sprintf("web-%d", i)})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		delete(kv.kv, addressPrefix+got[0].Addr().String())
		b.StartTimer()
	}
}
