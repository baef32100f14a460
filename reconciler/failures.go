package reconciler

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"time"
)

// failures are the failed rollouts by service: with a FailureStore, those any Drover of the
// fleet recorded there, plus any this one could not record; without, those it saw.
func (r *Reconciler) failures(ctx context.Context) (map[string]failure, error) {
	r.mu.Lock()
	out := maps.Clone(r.failed)
	r.mu.Unlock()
	if r.cfg.Failures == nil {
		return out, nil
	}
	prefix := r.failuresPrefix()
	stored, err := r.cfg.Failures.KVList(ctx, prefix)
	if err != nil {
		// Planning without them could retry a revision that already failed.
		return nil, fmt.Errorf("read failed revisions: %w", err)
	}
	for key, raw := range stored {
		var f failure
		if err := json.Unmarshal(raw, &f); err != nil {
			r.log.Warn("ignoring unreadable failed-revision record", "key", key, "err", err)
			continue
		}
		svc := strings.TrimPrefix(key, prefix)
		if cur, ok := out[svc]; !ok || f.At.After(cur.At) {
			out[svc] = f
		}
	}
	return out, nil
}

// failuresPrefix is where the fleet's failed rollouts are kept, one key per service.
func (r *Reconciler) failuresPrefix() string {
	return fleetKV(r.cfg.Fleet) + "failed/"
}

// recordFailure remembers that service's rollout failed, in memory and in the FailureStore.
// A record that cannot be written is logged: this Drover still holds the revision,
// but a restarted one would try it once more.
func (r *Reconciler) recordFailure(ctx context.Context, service string, f failure) {
	f.At = r.cfg.Now().UTC()
	r.mu.Lock()
	r.failed[service] = f
	r.mu.Unlock()
	r.emit(ctx, Event{Kind: EventRevisionHeld, Service: service, Revision: f.Revision, Reason: f.Reason + " (not tried again until a new commit or a retry)"})
	if r.cfg.Failures == nil {
		return
	}
	raw, err := json.Marshal(f)
	if err == nil {
		err = r.finish(ctx, func(ctx context.Context) error {
			return r.cfg.Failures.KVPut(ctx, r.failuresPrefix()+service, raw)
		})
	}
	if err != nil {
		r.log.Warn("could not record the failed revision in consul; a restarted drover will try it again", "service", service, "revision", shortRev(f.Revision), "err", err)
		return
	}
	// Consul has it now and is the record from here: deleting the key there lets the
	// revision be tried again without a new commit.
	r.mu.Lock()
	if r.failed[service].At.Equal(f.At) {
		delete(r.failed, service)
	}
	r.mu.Unlock()
}

// failure is a rollout that failed; it is not retried for the same commit.
type failure struct {
	Revision string    `json:"revision"`
	SpecHash string    `json:"spec_hash"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"` // when it failed; the newest record of a service wins
}
