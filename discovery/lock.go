package discovery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Leader election: one Drover per fleet acts, the others wait on a Consul lock
// (consul/api's Lock over a KV key) and take over when the leader dies.
//
// The lock's session is bound to a TTL health check that the holder heartbeats, not
// to a session TTL. Consul refuses session TTLs below 10 s (session_ttl_min) and
// invalidates a session only 2×TTL after its last renewal, so a leader killed with
// -9 would keep the lock 15–20 s, plus lock-delay. A TTL check has no minimum and
// turns critical CheckTTL after the last heartbeat; Consul invalidates a session the
// moment one of its checks turns critical. The session also carries the node's
// serfHealth, so a dead agent loses its locks too.
//
// Takeover after the leader dies (kill -9), with the defaults:
//
//	last heartbeat      >= death - CheckTTL/4          (heartbeat every 1.25 s)
//	check critical      <= death + CheckTTL            (5 s); the session is invalidated
//	                                                    and the key released at once
//	standby             wakes from its blocking read of the key, is refused while
//	                    lock-delay runs (2 s) and retries after consul/api's fixed
//	                    DefaultLockRetryTime (5 s)
//	acquired            <= death + CheckTTL + max(LockDelay, 5 s) + round trips ≈ 10 s
//
// A LockDelay above 5 s costs whole 5 s retries: keep it short.
const (
	defaultCheckTTL  = 5 * time.Second
	defaultLockDelay = 2 * time.Second
	// minCheckTTL keeps the heartbeat (CheckTTL/4) from hammering the agent.
	minCheckTTL = time.Second
	// maxLockDelay is Consul's own limit.
	maxLockDelay = time.Minute
	// lockWait bounds one blocking read of the key while standing by, so a
	// cancelled Lead returns within about this long: consul/api's Lock takes a
	// stop channel, not a context.
	lockWait = 2 * time.Second
	// leaderDeregisterAfter removes the heartbeat service of a leader that died;
	// Consul's minimum.
	leaderDeregisterAfter = time.Minute
	// catalogWait bounds the wait for the agent to sync the heartbeat check to the
	// servers: a session can only be bound to a check the catalog knows.
	catalogWait = 15 * time.Second
)

// leaderService is the Consul service under which each contender registers its
// heartbeat check. The underscore keeps it out of DNS and makes it impossible as a
// fleet service name; it never carries the "drover" tag, so the reconciler ignores it.
const leaderService = "drover_leader"

// LeaderOptions configures Lead. The zero value uses the defaults.
type LeaderOptions struct {
	// Holder names this contender to the others (host, pid): it is the lock's value
	// and what a standby reports as the leader.
	Holder string
	// CheckTTL is how long after its last heartbeat a silent holder loses the lock.
	// Default 5 s; at least 1 s.
	CheckTTL time.Duration
	// LockDelay is how long Consul keeps an invalidated holder's lock from everyone,
	// so a leader that lost it notices before another starts. Default 2 s; at most 1 m.
	LockDelay time.Duration
	// OnStandby, when set, is called once if the lock is held by another contender
	// when Lead starts waiting.
	OnStandby func(Holder)
}

// Holder is who holds a lock.
type Holder struct {
	// Session is the holder's Consul session ID.
	Session string
	// Value is the holder's LeaderOptions.Holder.
	Value string
}

func (o LeaderOptions) withDefaults() (LeaderOptions, error) {
	if o.CheckTTL == 0 {
		o.CheckTTL = defaultCheckTTL
	}
	if o.LockDelay == 0 {
		o.LockDelay = defaultLockDelay
	}
	var problems []string
	if o.CheckTTL < minCheckTTL {
		problems = append(problems, fmt.Sprintf("check TTL %s: want at least %s", o.CheckTTL, minCheckTTL))
	}
	if o.LockDelay < 0 || o.LockDelay > maxLockDelay {
		problems = append(problems, fmt.Sprintf("lock delay %s: want 0 to %s", o.LockDelay, maxLockDelay))
	}
	if len(problems) > 0 {
		return o, errors.New(strings.Join(problems, "; "))
	}
	return o, nil
}

func checkLockKey(key string) error {
	switch {
	case key == "":
		return errors.New("empty key")
	case strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/"):
		return fmt.Errorf("key %q: must not start or end with /", key)
	}
	return nil
}

// Lead blocks until this contender holds the lock on key, or ctx ends. While another
// holds it, Lead waits as a standby. Errors wrap ErrUnavailable when Consul cannot be
// reached; the caller retries. ctx bounds only the wait: the leadership lasts until it
// is lost or released.
func (c *Client) Lead(ctx context.Context, key string, opts LeaderOptions) (*Leadership, error) {
	if err := checkLockKey(key); err != nil {
		return nil, fmt.Errorf("lead %s: %w", key, err)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("lead %s: %w", key, err)
	}
	k, err := c.enter(ctx, key, opts)
	if err != nil {
		return nil, fmt.Errorf("lead %s: %w", key, err)
	}
	held := false
	defer func() {
		if held {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		if err := k.leave(cctx); err != nil {
			c.log.Warn("leave lock contention", "key", key, "err", err)
		}
	}()

	cctx, cancel := c.call(ctx)
	_, _, err = c.api.KV().Get(key, (&api.QueryOptions{}).WithContext(cctx))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("lead %s: read holder: %w", key, c.classify(ctx, err))
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		c.watchHolder(watchCtx, key, k.session, opts.OnStandby)
	}()
	defer func() { stopWatch(); <-watched }()

	lock, err := c.api.LockOpts(&api.LockOptions{
		Key:          key,
		Value:        []byte(opts.Holder),
		Session:      k.session,
		LockWaitTime: min(lockWait, c.maxWait),
		// Ride out an agent blip shorter than the check TTL; the heartbeat declares
		// the loss when it lasts longer.
		MonitorRetries:   int(opts.CheckTTL / time.Second),
		MonitorRetryTime: time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("lead %s: %w", key, err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-k.dead:
		case <-done:
		}
		close(stop)
	}()
	lockLost, err := lock.Lock(stop)
	close(done)
	switch {
	case ctx.Err() != nil:
		if lockLost != nil {
			// Acquired as ctx ended: hand the key back without lock-delay.
			pair := &api.KVPair{Key: key, Session: k.session, Flags: api.LockFlagValue}
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
			_, _, _ = c.api.KV().Release(pair, (&api.WriteOptions{}).WithContext(rctx))
			cancel()
		}
		return nil, fmt.Errorf("lead %s: %w", key, ctx.Err())
	case err != nil:
		// consul/api formats its errors with %v: ask Consul whether it answers.
		if perr := c.Ping(ctx); perr != nil {
			return nil, fmt.Errorf("lead %s: %w (%v)", key, perr, err)
		}
		return nil, fmt.Errorf("lead %s: %w", key, err)
	case lockLost == nil:
		// Stopped by the heartbeat: our session is gone while we waited.
		return nil, fmt.Errorf("lead %s: %w", key, k.deadErr())
	}
	held = true
	l := newLeadership(key, k)
	go l.watch(lockLost)
	return l, nil
}

// watchHolder follows the key with blocking queries while this contender waits, and
// calls onStandby once when another session holds it: the holder may take the lock a
// moment after this contender first looked, so one look is not enough.
func (c *Client) watchHolder(ctx context.Context, key, ours string, onStandby func(Holder)) {
	if onStandby == nil {
		return
	}
	var pair *api.KVPair
	_ = c.follow(ctx, blockingQuery{
		retry: true,
		get: func(q *api.QueryOptions) (*api.QueryMeta, error) {
			var meta *api.QueryMeta
			var err error
			pair, meta, err = c.api.KV().Get(key, q)
			return meta, err
		},
		answer: func(bool) (bool, error) {
			if pair == nil || pair.Session == "" {
				return false, nil
			}
			if pair.Session != ours {
				onStandby(Holder{Session: pair.Session, Value: string(pair.Value)})
			}
			return true, nil
		},
	})
}
