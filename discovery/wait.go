package discovery

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// maxBlock is the wait asked for while no hold is about to complete; the client's
// maxWait caps it further.
const maxBlock = time.Minute

// WaitPassing returns nil once every instance in ids of service has been passing, as
// clients of the service see it, continuously for hold. An instance that leaves
// passing starts its hold again. It follows the health endpoint with blocking
// queries, so it reacts to changes as Consul records them. When ctx ends first, the
// error wraps ctx.Err() and names each instance not yet held with its last status and
// check output.
func (c *Client) WaitPassing(ctx context.Context, service string, ids []string, hold time.Duration) error {
	if service == "" {
		return errors.New("wait passing: empty service name")
	}
	if len(ids) == 0 {
		return nil
	}
	w := &passingWait{hold: hold, since: map[string]time.Time{}, last: map[string]Instance{}}
	for _, id := range ids {
		w.last[id] = Instance{ID: id, Status: StatusCritical, Output: "not registered"}
	}

	err := c.follow(ctx, blockingQuery{
		// Wake when the last hold completes even if nothing changes in Consul.
		wait: func() time.Duration {
			d, ok := w.nextDeadline(time.Now())
			if !ok {
				return maxBlock
			}
			return d
		},
		get: func(q *api.QueryOptions) (*api.QueryMeta, error) {
			entries, meta, err := c.api.Health().Service(service, "", false, q)
			if err == nil {
				w.observe(entries, time.Now())
			}
			return meta, err
		},
		answer: func(bool) (bool, error) {
			c.log.Debug("health of instances", "service", service, "states", w.states())
			return w.done(time.Now()), nil
		},
	})
	switch {
	case ctx.Err() != nil:
		c.freshOutputs(w)
		return w.timeoutError(service, ctx.Err())
	case err != nil:
		return fmt.Errorf("wait for %s passing (%s): %w", service, strings.Join(ids, ", "), err)
	}
	c.log.Debug("instances passing", "service", service, "instances", ids, "hold", hold)
	return nil
}

// passingWait tracks, per instance, since when it has been seen passing.
type passingWait struct {
	hold  time.Duration
	since map[string]time.Time // zero: not passing
	last  map[string]Instance  // last state seen, for the timeout message
}

func (w *passingWait) observe(entries []*api.ServiceEntry, now time.Time) {
	seen := map[string]bool{}
	for _, e := range entries {
		if e.Service == nil {
			continue
		}
		id := e.Service.ID
		if _, wanted := w.last[id]; !wanted {
			continue
		}
		seen[id] = true
		status, output := aggregate(e.Checks)
		w.last[id] = Instance{ID: id, Status: status, Output: output}
		if status != StatusPassing {
			w.since[id] = time.Time{}
		} else if w.since[id].IsZero() {
			w.since[id] = now
		}
	}
	for id := range w.last {
		if !seen[id] {
			w.last[id] = Instance{ID: id, Status: StatusCritical, Output: "not registered"}
			w.since[id] = time.Time{}
		}
	}
}

// nextDeadline is how long until every instance has completed its hold, when all are
// passing now; otherwise (false) only a change in Consul can end the wait.
func (w *passingWait) ids() []string {
	ids := make([]string, 0, len(w.last))
	for id := range w.last {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (w *passingWait) states() string {
	states := make([]string, 0, len(w.last))
	for _, id := range w.ids() {
		states = append(states, id+"="+string(w.last[id].Status))
	}
	return strings.Join(states, " ")
}

func (w *passingWait) nextDeadline(now time.Time) (time.Duration, bool) {
	var longest time.Duration
	for id := range w.last {
		s := w.since[id]
		if s.IsZero() {
			return 0, false
		}
		if left := w.hold - now.Sub(s); left > longest {
			longest = left
		}
	}
	return longest, true
}

func (w *passingWait) done(now time.Time) bool {
	left, ok := w.nextDeadline(now)
	return ok && left <= 0
}

// freshOutputs replaces the outputs of instances not passing with the local agent's.
// The agent syncs a check's output to the catalog only when its status changes (or
// every check_update_interval, 5m by default), so an instance critical from the start
// shows no output in health results; the agent knows why it fails. Best effort: the
// caller's ctx is over, so this gets a short one of its own.
func (c *Client) freshOutputs(w *passingWait) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	checks, err := c.api.Agent().ChecksWithFilterOpts("", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return
	}
	byService := checksByService(checks)
	for id, inst := range w.last {
		chs, ok := byService[id]
		if !ok || inst.Status == StatusPassing {
			continue
		}
		if status, output := aggregate(chs); status != StatusPassing && output != "" {
			inst.Output = output
			w.last[id] = inst
		}
	}
}

func (w *passingWait) timeoutError(service string, cause error) error {
	now := time.Now()
	var pending []string
	for _, id := range w.ids() {
		inst := w.last[id]
		switch s := w.since[id]; {
		case !s.IsZero() && now.Sub(s) >= w.hold:
			continue
		case !s.IsZero():
			pending = append(pending, fmt.Sprintf("%s passing for %s of %s", id, now.Sub(s).Round(time.Millisecond), w.hold))
		case inst.Output != "":
			pending = append(pending, fmt.Sprintf("%s %s: %s", id, inst.Status, strings.TrimSpace(inst.Output)))
		default:
			pending = append(pending, fmt.Sprintf("%s %s", id, inst.Status))
		}
	}
	return fmt.Errorf("wait for %s passing: not passing: %s: %w", service, strings.Join(pending, "; "), cause)
}
