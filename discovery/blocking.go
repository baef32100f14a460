package discovery

import (
	"context"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/drover-dev/drover/internal/backoff"
)

// Blocking queries: one loop for every place that follows Consul's state, so the
// index rules, the per-call timeout and the retry delay are written once.

const (
	// minRoundWait keeps a round from asking Consul for a wait of nothing, which
	// would make a loop that is not done yet spin.
	minRoundWait = 10 * time.Millisecond
	// Retry delays after a failed round, for loops that outlast an outage.
	retryMin = time.Second
	retryMax = 30 * time.Second
)

// consulIndex tracks the X-Consul-Index of one blocking query by Consul's rules
// (https://developer.hashicorp.com/consul/api-docs/features/blocking): block on the
// last index seen; start over from 0 (a fresh read that does not block) when the
// index goes backwards, as after a restart or a snapshot restore; and never block on
// 0, which would return at once, round after round.
type consulIndex struct {
	last uint64 // 0: no index yet, the next read does not block
}

// wait is the index the next round blocks on.
func (i *consulIndex) wait() uint64 { return i.last }

// observe records an answer's index and reports whether the answer may hold news:
// the first answer, one after a reset, or one whose index moved. An answer with the
// index it waited on is a wait that ran out with nothing new.
func (i *consulIndex) observe(got uint64) (news bool) {
	if got == 0 {
		got = 1
	}
	switch {
	case i.last == 0:
		i.last = got
		return true
	case got < i.last:
		// Consul's state was reset: this answer is current, but its index is not
		// one to block on; the next round reads afresh.
		i.last = 0
		return true
	case got == i.last:
		return false
	default:
		i.last = got
		return true
	}
}

// blockingQuery is one followed endpoint.
type blockingQuery struct {
	// get runs one round with q (which carries the round's context, index and
	// wait) and returns the answer's meta; the caller keeps the answer itself.
	get func(q *api.QueryOptions) (*api.QueryMeta, error)
	// answer is called after each round that got an answer; news is false when the
	// round's wait ran out with nothing new (see consulIndex.observe). done ends the
	// loop; an error ends it too and is returned as is.
	answer func(news bool) (done bool, err error)
	// wait, when set, shortens one round's wait (a caller waking for a deadline of
	// its own). It is capped at the client's maxWait, so each round ends inside the
	// call timeout.
	wait func() time.Duration
	// retry makes a failed round wait (internal/backoff) and try again until ctx
	// ends; otherwise the first error ends the loop.
	retry bool
}

// follow runs q's rounds until answer says done, ctx ends, or (without retry) a
// round fails. Errors are classified (ErrUnavailable, ctx's error).
func (c *Client) follow(ctx context.Context, q blockingQuery) error {
	var index consulIndex
	retry := backoff.Backoff{Min: retryMin, Max: retryMax}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		wait := c.maxWait
		if q.wait != nil {
			wait = min(wait, q.wait())
		}
		wait = max(wait, minRoundWait)
		cctx, cancel := c.call(ctx)
		opts := (&api.QueryOptions{WaitIndex: index.wait(), WaitTime: wait}).WithContext(cctx)
		meta, err := q.get(opts)
		cancel()
		if err != nil {
			err = c.classify(ctx, err)
			if !q.retry || ctx.Err() != nil {
				return err
			}
			c.log.Debug("blocking query failed, retrying", "err", err, "attempt", retry.Attempts()+1)
			if !retry.Wait(ctx) {
				return ctx.Err()
			}
			continue
		}
		retry.Reset()
		var last uint64
		if meta != nil {
			last = meta.LastIndex
		}
		news := index.observe(last)
		if done, err := q.answer(news); done || err != nil {
			return err
		}
	}
}
