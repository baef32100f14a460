package reconciler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/drover-dev/drover/hypervisor"
)

// addressPollInterval is how often a booting DHCP guest's address is asked of the
// driver: a List, which reads leases and the neighbour table.
const addressPollInterval = 250 * time.Millisecond

// errNoAddress: no source knew a DHCP guest's address (yet).
var errNoAddress = errors.New("no address learned")

// awaitAddress waits until the driver knows the address of a guest that takes it by
// DHCP, asking every addressPollInterval until ctx (the health gate) ends. Until then
// the probes' last error says which sources were asked, so a VM whose address never
// appears fails its gate naming them.
func (r *Reconciler) awaitAddress(ctx context.Context, p *probes, vm hypervisor.VM) (hypervisor.VM, bool) {
	note := func(vm hypervisor.VM) {
		sources := "the driver"
		if len(vm.AddressSources) > 0 {
			sources = strings.Join(vm.AddressSources, ", ")
		}
		p.mu.Lock()
		p.lastErr[vm.Name] = fmt.Errorf("%w for mac %s from %s", errNoAddress, orNone(vm.Meta.MAC), sources)
		p.mu.Unlock()
	}
	note(vm)
	tick := time.NewTicker(addressPollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return vm, false
		case <-tick.C:
		}
		vms, err := r.cfg.Hypervisor.List(ctx)
		if err != nil {
			continue
		}
		for _, now := range vms {
			if now.Name != vm.Name {
				continue
			}
			if now.Address != "" {
				p.mu.Lock()
				delete(p.lastErr, vm.Name)
				p.mu.Unlock()
				return now, true
			}
			note(now)
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
