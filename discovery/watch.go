package discovery

import (
	"context"

	"github.com/hashicorp/consul/api"
)

// WatchHealth calls changed whenever a health check on the agent's datacenter changes
// state, using blocking queries: it wakes within milliseconds of a change and costs
// one short request per round while nothing changes. It returns when ctx ends.
// Errors (Consul down) are retried with backoff; the caller's own passes report them.
func (c *Client) WatchHealth(ctx context.Context, changed func()) {
	first := true
	_ = c.follow(ctx, blockingQuery{
		retry: true,
		get: func(q *api.QueryOptions) (*api.QueryMeta, error) {
			_, meta, err := c.api.Health().State(api.HealthAny, q)
			return meta, err
		},
		answer: func(news bool) (bool, error) {
			if news && !first {
				changed()
			}
			first = false
			return false, nil
		},
	})
}
