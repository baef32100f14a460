package discovery

import (
	"context"
	"time"

	"github.com/hashicorp/consul/api"
)

// WatchHealth calls changed whenever a health check on the agent's datacenter changes
// state, using blocking queries: it wakes within milliseconds of a change and costs
// nothing while nothing changes. It returns when ctx ends. Errors (Consul down) are
// retried with backoff; the caller's own passes report them.
func (c *Client) WatchHealth(ctx context.Context, changed func()) {
	var index uint64
	backoff := time.Second
	for ctx.Err() == nil {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Minute}).WithContext(ctx)
		_, meta, err := c.api.Health().State(api.HealthAny, q)
		if err != nil {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, 30*time.Second)
			index = 0
			continue
		}
		backoff = time.Second
		if meta.LastIndex < index {
			index = 0 // the index went backwards (Consul restarted): start over
			continue
		}
		if index != 0 && meta.LastIndex != index {
			changed()
		}
		index = meta.LastIndex
	}
}
