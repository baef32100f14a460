package discovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/consul/api"
)

// Status is an instance's health as Consul reports it.
type Status string

const (
	StatusPassing     Status = "passing"
	StatusWarning     Status = "warning"
	StatusCritical    Status = "critical"
	StatusMaintenance Status = "maintenance"
)

// Instance is one registered service instance and its aggregated health.
type Instance struct {
	ID, Service, Address string
	// Node is the Consul node the instance is registered on; set by
	// ServiceInstances only (Instances lists the local agent's).
	Node   string
	Port   int
	Tags   []string
	Meta   map[string]string
	Status Status
	// Output is the output of the worst non-passing check (the maintenance reason in
	// maintenance), for messages; empty when passing.
	Output string
}

// aggregate folds an instance's checks into one status the way ?passing sees it: any
// maintenance check wins, then the worst check; no checks at all is passing.
func aggregate(checks []*api.HealthCheck) (Status, string) {
	status, output := StatusPassing, ""
	rank := map[Status]int{StatusPassing: 0, StatusWarning: 1, StatusCritical: 2}
	for _, ch := range checks {
		if ch.CheckID == api.NodeMaint || strings.HasPrefix(ch.CheckID, api.ServiceMaintPrefix) {
			return StatusMaintenance, ch.Notes
		}
		s := Status(ch.Status)
		r, known := rank[s]
		if !known { // an unknown status must not pass as healthy
			s, r = StatusCritical, rank[StatusCritical]
		}
		if r > rank[status] {
			status, output = s, ch.Output
		}
	}
	return status, output
}

// checksByService groups the agent's checks by the service instance they belong to.
func checksByService(checks map[string]*api.AgentCheck) map[string][]*api.HealthCheck {
	out := map[string][]*api.HealthCheck{}
	for _, ch := range checks {
		if ch.ServiceID == "" {
			continue
		}
		out[ch.ServiceID] = append(out[ch.ServiceID], &api.HealthCheck{
			CheckID: ch.CheckID, Status: ch.Status, Output: ch.Output, Notes: ch.Notes,
		})
	}
	return out
}

// Instances lists every service instance on the local agent that carries tag, with
// its health from the agent's own checks. Sorted by ID.
func (c *Client) Instances(ctx context.Context, tag string) ([]Instance, error) {
	if tag == "" {
		return nil, errors.New("list instances: empty tag")
	}
	cctx, cancel := c.call(ctx)
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(cctx)
	services, err := c.api.Agent().ServicesWithFilterOpts("", q)
	if err != nil {
		return nil, fmt.Errorf("list instances tagged %s: %w", tag, c.classify(ctx, err))
	}
	checks, err := c.api.Agent().ChecksWithFilterOpts("", q)
	if err != nil {
		return nil, fmt.Errorf("list checks of instances tagged %s: %w", tag, c.classify(ctx, err))
	}
	byService := checksByService(checks)
	var out []Instance
	for _, s := range services {
		if !slices.Contains(s.Tags, tag) {
			continue
		}
		status, output := aggregate(byService[s.ID])
		out = append(out, Instance{
			ID: s.ID, Service: s.Service, Address: s.Address, Port: s.Port,
			Tags: s.Tags, Meta: s.Meta, Status: status, Output: output,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// PassingCount is how many instances of service a client of it sees: the length of
// the cluster's ?passing health result.
func (c *Client) PassingCount(ctx context.Context, service string) (int, error) {
	if service == "" {
		return 0, errors.New("count passing: empty service name")
	}
	cctx, cancel := c.call(ctx)
	defer cancel()
	entries, _, err := c.api.Health().Service(service, "", true, (&api.QueryOptions{}).WithContext(cctx))
	if err != nil {
		return 0, fmt.Errorf("count passing instances of %s: %w", service, c.classify(ctx, err))
	}
	return len(entries), nil
}

// ServiceInstances lists every instance registered under service in the catalog, on
// any node and with any tags, with its health: what a client of the service can be
// sent to. The reconciler uses it to refuse to register into a service whose
// instances are not all its own. Sorted by node, then ID.
func (c *Client) ServiceInstances(ctx context.Context, service string) ([]Instance, error) {
	if service == "" {
		return nil, errors.New("list service instances: empty service name")
	}
	cctx, cancel := c.call(ctx)
	defer cancel()
	entries, _, err := c.api.Health().Service(service, "", false, (&api.QueryOptions{}).WithContext(cctx))
	if err != nil {
		return nil, fmt.Errorf("list instances of service %s: %w", service, c.classify(ctx, err))
	}
	out := make([]Instance, 0, len(entries))
	for _, e := range entries {
		if e.Service == nil {
			continue
		}
		inst := Instance{
			ID: e.Service.ID, Service: e.Service.Service, Address: e.Service.Address, Port: e.Service.Port,
			Tags: e.Service.Tags, Meta: e.Service.Meta,
		}
		if e.Node != nil {
			inst.Node = e.Node.Node
			if inst.Address == "" { // Consul's rule: the node's address stands in
				inst.Address = e.Node.Address
			}
		}
		inst.Status, inst.Output = aggregate(e.Checks)
		out = append(out, inst)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Node != out[j].Node {
			return out[i].Node < out[j].Node
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}
