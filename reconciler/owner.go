package reconciler

import (
	"context"
	"fmt"
	"slices"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/sources"
)

// ForeignServiceError is a service named like a Consul service that has instances this
// fleet did not register: booting VMs into it would put them in another team's DNS
// answers (`vault.service.consul`). Refused unless the fleet file opts in.
type ForeignServiceError struct {
	Service string
	// Example is one foreign instance, for the message.
	Example discovery.Instance
	Count   int
}

func (e *ForeignServiceError) Error() string {
	return fmt.Sprintf("service %s refused: consul service %q already has %d instance(s) not of this fleet (e.g. %s at %s:%d); "+
		"nothing created. Rename the service, or set share_consul_service: true on it to join that consul service on purpose",
		e.Service, e.Service, e.Count, e.Example.ID, e.Example.Address, e.Example.Port)
}

// checkServiceOwner refuses svc when its Consul service has instances that are not this
// fleet's and the fleet file does not say share_consul_service.
func (r *Reconciler) checkServiceOwner(ctx context.Context, svc sources.Service) error {
	if svc.ShareConsulService {
		return nil
	}
	instances, err := r.cfg.Health.ServiceInstances(ctx, svc.Name)
	if err != nil {
		return fmt.Errorf("service %s: check who else registers consul service %q: %w", svc.Name, svc.Name, err)
	}
	var foreign []discovery.Instance
	for _, in := range instances {
		if !slices.Contains(in.Tags, Tag) || in.Meta[MetaFleet] != r.cfg.Fleet {
			foreign = append(foreign, in)
		}
	}
	if len(foreign) == 0 {
		return nil
	}
	slices.SortFunc(foreign, func(a, b discovery.Instance) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return &ForeignServiceError{Service: svc.Name, Example: foreign[0], Count: len(foreign)}
}
