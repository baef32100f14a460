package reconciler

import (
	"errors"
	"fmt"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/sources"
)

// vmNameTries bounds the draws for a free VM name: 36⁵ suffixes make a collision rare,
// so running out means a broken random source, never a busy fleet.
const vmNameTries = 100

// vmName draws a name for a new VM of service with spec hash, not in taken, and adds it.
func (r *Reconciler) vmName(service, hash string, taken map[string]bool) (string, error) {
	r.randMu.Lock()
	defer r.randMu.Unlock()
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	for range vmNameTries {
		suffix := make([]byte, 5)
		for i := range suffix {
			suffix[i] = alphabet[r.cfg.Rand.IntN(len(alphabet))]
		}
		name := fmt.Sprintf("%s-%s-%s", service, shortHash(hash), suffix)
		if !taken[name] {
			taken[name] = true
			return name, nil
		}
	}
	return "", fmt.Errorf("name a new vm of %s: %d names drawn, all taken", service, vmNameTries)
}

// registration is the Consul instance for a VM of svc.
func registration(svc sources.Service, vm hypervisor.VM) discovery.Registration {
	deregisterAfter := svc.Update.HealthyDeadline + time.Minute
	return discovery.Registration{
		ID:      vm.Name,
		Service: svc.Name,
		Address: vm.Address,
		Port:    vm.Port,
		Tags:    []string{Tag},
		Meta:    registrationMeta(vm.Meta),
		Check: discovery.Check{
			HTTPPath:                svc.Check.HTTP,
			TCP:                     svc.Check.TCP,
			Interval:                svc.Check.Interval,
			Timeout:                 svc.Check.Timeout,
			DeregisterCriticalAfter: deregisterAfter,
		},
	}
}

// MetaFleet is the Consul meta key naming an instance's fleet.
const MetaFleet = "fleet"

// registrationMeta is the Consul meta of a VM's instance: what DESIGN.md promises
// clients (version, revision, spec_hash) and, when it has one, the VM's fleet.
func registrationMeta(m hypervisor.Metadata) map[string]string {
	meta := map[string]string{"version": m.Version, "revision": m.Revision, "spec_hash": m.SpecHash}
	if m.Fleet != "" {
		meta[MetaFleet] = m.Fleet
	}
	return meta
}

// maxFleetLen keeps a fleet name usable in Consul meta values and KV keys, and short
// enough to read in logs.
const maxFleetLen = 63

// ValidFleet checks a fleet name: 1 to 63 characters, lower-case letters, digits and
// '-', starting and ending with a letter or digit (a DNS label).
func ValidFleet(name string) error {
	if name == "" {
		return errors.New("fleet name is empty")
	}
	if len(name) > maxFleetLen {
		return fmt.Errorf("fleet name %q is %d characters long, more than %d", name, len(name), maxFleetLen)
	}
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(name)-1
		if !ok {
			return fmt.Errorf("fleet name %q: character %q at %d; use lower-case letters, digits and '-' (not first or last)", name, c, i+1)
		}
	}
	return nil
}
