package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/sources"
)

// Static addresses are allocated without a database of Drover's own: an address is
// free when it is in none of what the world says is using it —
//   - the metadata of any VM on the host (every driver records the address it created a
//     VM with), whichever fleet it belongs to;
//   - any Consul instance tagged drover;
//   - a reservation, drover/addresses/<ip> in Consul KV, created with a check-and-set
//     before the VM is created and deleted with the VM.
//
// The reservation is what makes two Drovers (two fleets sharing a pool, or one racing
// itself) never pick one address: only one check-and-set on a new key succeeds. The
// VM's metadata and its Consul instance are what a reservation lost to a crash is
// checked against before it is collected.

// AddressReservations is the Consul KV a static address pool needs (one
// *discovery.Client serves it).
type AddressReservations interface {
	KVCreate(ctx context.Context, key string, value []byte) (bool, error)
	KVDelete(ctx context.Context, key string) error
	KVList(ctx context.Context, prefix string) (map[string][]byte, error)
}

// addressPrefix is where reservations live in Consul KV, shared by every fleet.
const addressPrefix = "drover/addresses/"

// ErrPoolExhausted: every address of a static pool is in use.
var ErrPoolExhausted = errors.New("address pool exhausted")

// reservation is the value of a reservation key: who holds the address, and since when
// (a reservation whose VM never came is collected after 2×OpTimeout).
type reservation struct {
	VM      string    `json:"vm"`
	Fleet   string    `json:"fleet"`
	Service string    `json:"service"`
	At      time.Time `json:"at"`
}

// addressBook serialises one Drover's allocations, so its parallel creates do not race
// each other for the same key (the check-and-set would sort them out, at the cost of
// a retry each).
type addressBook struct{ mu sync.Mutex }

// reserveAddresses reserves one address of svc's pool for each VM name, all or none:
// an exhausted pool is an error that changes nothing. The addresses come back with
// the pool's prefix, in the order of names.
func (r *Reconciler) reserveAddresses(ctx context.Context, svc sources.Service, names []string) ([]netip.Prefix, error) {
	pool, ok := svc.Network.Pool()
	if !ok {
		return nil, nil
	}
	if r.cfg.Reservations == nil {
		return nil, fmt.Errorf("allocate addresses of %s: static addressing needs Consul KV for its reservations", svc.Name)
	}
	r.addresses.mu.Lock()
	defer r.addresses.mu.Unlock()
	taken, err := r.takenAddresses(ctx)
	if err != nil {
		return nil, fmt.Errorf("allocate addresses of %s: %w", svc.Name, err)
	}
	var got []netip.Prefix
	release := func() {
		for i, a := range got {
			r.releaseAddress(ctx, names[i], a.Addr())
		}
	}
	for _, name := range names {
		a, err := r.reserveOne(ctx, svc, pool, taken, name)
		if err != nil {
			release()
			return nil, fmt.Errorf("allocate an address for %s from %s: %w", name, pool, err)
		}
		taken[a] = true
		got = append(got, netip.PrefixFrom(a, svc.Network.Prefix))
	}
	return got, nil
}

func (r *Reconciler) reserveOne(ctx context.Context, svc sources.Service, pool sources.Pool, taken map[netip.Addr]bool, name string) (netip.Addr, error) {
	value, err := json.Marshal(reservation{VM: name, Fleet: r.cfg.Fleet, Service: svc.Name, At: r.cfg.Now().UTC()})
	if err != nil {
		return netip.Addr{}, err
	}
	for {
		a, ok := pickFree(pool, taken, startIndex(name, pool.Size()))
		if !ok {
			return netip.Addr{}, fmt.Errorf("%w: all %d addresses are held by VMs, Consul instances or reservations", ErrPoolExhausted, pool.Size())
		}
		var created bool
		err := r.finish(ctx, func(ctx context.Context) error {
			var err error
			created, err = r.cfg.Reservations.KVCreate(ctx, addressPrefix+a.String(), value)
			return err
		})
		if err != nil {
			return netip.Addr{}, err
		}
		if created {
			r.cfg.Hook(PointAddressReserved)
			return a, nil
		}
		// Another Drover reserved it since the list was read.
		taken[a] = true
	}
}

// pickFree is the first address of pool not in taken, looking from the start-th on and
// wrapping around.
func pickFree(pool sources.Pool, taken map[netip.Addr]bool, start int) (netip.Addr, bool) {
	n := pool.Size()
	for i := range n {
		if a := pool.At((start + i) % n); !taken[a] {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// startIndex spreads where VMs begin looking, by name: two Drovers allocating at the
// same instant then rarely try the same address first. Any start is correct.
func startIndex(name string, size int) int {
	h := fnv.New32a()
	h.Write([]byte(name))
	return int(h.Sum32() % uint32(size))
}

// takenAddresses is every address the host's VMs, Consul's drover instances and the
// reservations say is in use, whatever the pool or fleet.
func (r *Reconciler) takenAddresses(ctx context.Context) (map[netip.Addr]bool, error) {
	vms, err := r.cfg.Hypervisor.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list vms: %w", err)
	}
	instances, err := r.cfg.Health.Instances(ctx, Tag)
	if err != nil {
		return nil, fmt.Errorf("consul instances: %w", err)
	}
	held, err := r.cfg.Reservations.KVList(ctx, addressPrefix)
	if err != nil {
		return nil, fmt.Errorf("address reservations: %w", err)
	}
	return takenSet(vms, instances, held), nil
}

func takenSet(vms []hypervisor.VM, instances []discovery.Instance, held map[string][]byte) map[netip.Addr]bool {
	taken := make(map[netip.Addr]bool, len(vms)+len(instances)+len(held))
	add := func(s string) {
		if pfx, err := netip.ParsePrefix(s); err == nil {
			taken[pfx.Addr()] = true
		} else if a, err := netip.ParseAddr(s); err == nil {
			taken[a] = true
		}
	}
	for _, vm := range vms {
		add(vm.Meta.Address)
		add(vm.Address)
	}
	for _, in := range instances {
		add(in.Address)
	}
	for k := range held {
		add(strings.TrimPrefix(k, addressPrefix))
	}
	return taken
}

// releaseAddress deletes the reservation of addr if vm holds it. A failure is logged:
// the collector removes it later.
func (r *Reconciler) releaseAddress(ctx context.Context, vm string, addr netip.Addr) {
	if r.cfg.Reservations == nil || !addr.IsValid() {
		return
	}
	key := addressPrefix + addr.String()
	err := r.finish(ctx, func(ctx context.Context) error {
		held, err := r.cfg.Reservations.KVList(ctx, key)
		if err != nil {
			return err
		}
		var res reservation
		if raw, ok := held[key]; !ok || json.Unmarshal(raw, &res) != nil || res.VM != vm {
			return nil // someone else's, or gone already
		}
		return r.cfg.Reservations.KVDelete(ctx, key)
	})
	if err != nil {
		r.log.Warn("releasing an address reservation; it will be collected later", "vm", vm, "address", addr, "err", err)
	}
}

// releaseVMAddress frees the static address a destroyed VM was created with.
func (r *Reconciler) releaseVMAddress(ctx context.Context, vm hypervisor.VM) {
	if pfx, err := netip.ParsePrefix(vm.Meta.Address); err == nil {
		r.releaseAddress(ctx, vm.Name, pfx.Addr())
	}
}

// collectReservations deletes this fleet's reservations whose VM exists neither on the
// host nor in Consul and that are older than 2×OpTimeout: a create is bounded by
// OpTimeout, so such a VM is never coming (Drover was killed between reserving and
// creating, or between destroying and releasing). Other fleets' reservations are
// theirs to collect: their VMs may live on another host.
func (r *Reconciler) collectReservations(ctx context.Context, log *slog.Logger) {
	if r.cfg.Reservations == nil {
		return
	}
	held, err := r.cfg.Reservations.KVList(ctx, addressPrefix)
	if err != nil || len(held) == 0 {
		if err != nil {
			log.Warn("reading address reservations", "err", err)
		}
		return
	}
	// Read after the reservations: a VM created since then is in these lists.
	vms, err := r.cfg.Hypervisor.List(ctx)
	if err != nil {
		return
	}
	instances, err := r.cfg.Health.Instances(ctx, Tag)
	if err != nil {
		return
	}
	exists := map[string]bool{}
	for _, vm := range vms {
		exists[vm.Name] = true
	}
	for _, in := range instances {
		exists[in.ID] = true
	}
	for key, raw := range held {
		var res reservation
		if err := json.Unmarshal(raw, &res); err != nil || res.Fleet != r.cfg.Fleet || exists[res.VM] {
			continue
		}
		if age := r.cfg.Now().Sub(res.At); age < 2*r.cfg.OpTimeout {
			continue
		}
		if err := fenced(ctx, func(ctx context.Context) error { return r.cfg.Reservations.KVDelete(ctx, key) }); err != nil {
			log.Warn("collecting an address reservation", "key", key, "err", err)
			continue
		}
		log.Info("collected address reservation of a vm that never came or is gone", "address", strings.TrimPrefix(key, addressPrefix), "vm", res.VM, "event", "repair")
	}
}

// withNetwork gives a new VM on a bridge or libvirt network its stable MAC and, with
// static addressing, its address: recorded in its metadata (which is how allocators
// see it), and handed to the guest through cloud-init's network-config when it has a
// seed and the kernel's ip= when it boots a kernel.
func withNetwork(s hypervisor.Spec, svc sources.Service, addr netip.Prefix) hypervisor.Spec {
	if s.Network.Mode == hypervisor.NetworkUser {
		return s
	}
	s.Network.MAC = hypervisor.MACFor(s.Name)
	s.Meta.MAC = s.Network.MAC
	if !addr.IsValid() {
		return s
	}
	s.Network.Address = addr.String()
	s.Network.Gateway = svc.Network.Gateway
	s.Network.DNS = svc.Network.DNS
	s.Meta.Address = s.Network.Address
	if s.Kernel != "" {
		s.Cmdline = strings.TrimSpace(s.Cmdline + " " + s.Network.KernelIPArg())
	}
	// A disk image learns its address from cloud-init's network-config, so it gets a
	// seed even without cloud_init (withSeed adds the meta-data later).
	if s.Kernel == "" || s.Seed != nil {
		var seed hypervisor.Seed
		if s.Seed != nil {
			seed = *s.Seed
		}
		seed.NetworkConfig = s.Network.CloudInitNetworkConfig()
		s.Seed = &seed
	}
	return s
}

// addressDrift says how a VM's recorded network identity no longer fits its service:
// a MAC other than the one its name gives, or a static address outside the pool.
func addressDrift(svc sources.Service, vm hypervisor.VM) string {
	if svc.Network.Mode == hypervisor.NetworkUser {
		return ""
	}
	if want := hypervisor.MACFor(vm.Name); vm.Meta.MAC != "" && !strings.EqualFold(vm.Meta.MAC, want) {
		return fmt.Sprintf("network: mac %s, want %s (derived from the vm's name)", vm.Meta.MAC, want)
	}
	pool, static := svc.Network.Pool()
	if !static {
		return ""
	}
	pfx, err := netip.ParsePrefix(vm.Meta.Address)
	switch {
	case err != nil:
		return fmt.Sprintf("network: no static address recorded (%q), want one of %s", vm.Meta.Address, pool)
	case !pool.Contains(pfx.Addr()) || pfx.Bits() != svc.Network.Prefix:
		return fmt.Sprintf("network: address %s is outside network.addresses %s/%d", pfx, pool, svc.Network.Prefix)
	}
	return ""
}
