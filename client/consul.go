package client

import (
	"context"
	"fmt"
	"strings"

	"github.com/drover-dev/drover/reconciler"
)

// Consul answers from Consul directly when no Drover does, through the reconciler's
// own offline Operator (reconciler.NewOffline), so the fleet's records and event ring
// are read and written by the code that keeps them: what Consul holds of a fleet (its
// instances on the local agent, held revisions, suspensions, the events), not what
// only a running Drover knows (the commit's desired state, a rollout's progress). Its
// Status says so in FleetStatus.Error. Errors are the reconciler's
// (reconciler.ErrNotHeld, reconciler.ErrUnknownService).
type Consul struct {
	// Store is the agent; *discovery.Client is one.
	Store reconciler.OfflineStore
	// Fleet is the fleet's name; empty: the only one Consul has.
	Fleet string
	// Addr is the agent's address, for messages.
	Addr string
}

// operator is the offline Operator of c.Fleet, or of the only fleet Consul's KV has
// records of.
func (c *Consul) operator(ctx context.Context) (*reconciler.Operator, error) {
	fleet := c.Fleet
	if fleet == "" {
		names, err := reconciler.StoredFleets(ctx, c.Store)
		if err != nil {
			return nil, err
		}
		switch len(names) {
		case 0:
			return nil, fmt.Errorf("consul at %s holds no drover fleet: give --fleet", c.Addr)
		case 1:
			fleet = names[0]
		default:
			return nil, fmt.Errorf("consul at %s holds several drover fleets (%s): choose one with --fleet", c.Addr, strings.Join(names, ", "))
		}
	}
	return reconciler.NewOffline(fleet, c.Store, nil)
}

// Status is what Consul knows of the fleet, per service: instances by version and
// health, held revision, suspension. Desired version and progress stay empty.
func (c *Consul) Status(ctx context.Context) (reconciler.FleetStatus, error) {
	op, err := c.operator(ctx)
	if err != nil {
		return reconciler.FleetStatus{}, err
	}
	st, err := op.FleetStatus(ctx)
	if err != nil {
		return st, err
	}
	st.Error = "read from Consul at " + c.Addr + " (no Drover answered): the desired state and rollout progress are unknown"
	return st, nil
}

// History is the fleet's event ring as stored, oldest first, filtered and cut like
// the API's.
func (c *Consul) History(ctx context.Context, service string, limit int) ([]reconciler.Event, error) {
	op, err := c.operator(ctx)
	if err != nil {
		return nil, err
	}
	return op.History(ctx, service, limit)
}

// Suspend records the suspension, and its event, where every Drover of the fleet
// reads them; a service Consul has no instance, record or event of is refused.
func (c *Consul) Suspend(ctx context.Context, service, reason string) error {
	op, err := c.operator(ctx)
	if err != nil {
		return err
	}
	return op.Suspend(ctx, service, reason)
}

// Resume deletes the suspension (a service not suspended: nothing to do).
func (c *Consul) Resume(ctx context.Context, service string) error {
	op, err := c.operator(ctx)
	if err != nil {
		return err
	}
	return op.Resume(ctx, service)
}

// Retry deletes the held revision, so the next pass tries it again.
func (c *Consul) Retry(ctx context.Context, service string) error {
	op, err := c.operator(ctx)
	if err != nil {
		return err
	}
	return op.Retry(ctx, service)
}
