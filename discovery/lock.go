package discovery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
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

// LeaderService is the Consul service under which each contender registers its
// heartbeat check. The underscore keeps it out of DNS and makes it impossible as a
// fleet service name; it never carries the "drover" tag, so the reconciler ignores it.
const LeaderService = "drover_leader"

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

// Leadership is a held lock. Release it when done: it owns a session, a heartbeat
// and a registration in Consul.
type Leadership struct {
	key string
	k   *contender

	lost     chan struct{}
	lostOnce sync.Once
	released chan struct{}

	releaseOnce sync.Once
	releaseErr  error
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
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := k.leave(cctx); err != nil {
			c.log.Warn("leave lock contention", "key", key, "err", err)
		}
	}()

	if _, _, err := c.api.KV().Get(key, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
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
		LockWaitTime: lockWait,
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
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
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
	l := &Leadership{key: key, k: k, lost: make(chan struct{}), released: make(chan struct{})}
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
	var index uint64
	for ctx.Err() == nil {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: 30 * time.Second}).WithContext(ctx)
		pair, meta, err := c.api.KV().Get(key, q)
		if err != nil {
			t := time.NewTimer(time.Second)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		if pair != nil && pair.Session != "" {
			if pair.Session != ours {
				onStandby(Holder{Session: pair.Session, Value: string(pair.Value)})
			}
			return
		}
		index = meta.LastIndex
	}
}

// Lost is closed when the leadership ends: the session was invalidated (the
// heartbeat check failed, the session was destroyed, the agent died), Consul could not
// be reached for longer than the check TTL, or Release was called. A lost leadership
// still needs Release to clean up its session and heartbeat.
func (l *Leadership) Lost() <-chan struct{} { return l.lost }

// Session is the Consul session holding the lock.
func (l *Leadership) Session() string { return l.k.session }

// Key is the lock's key.
func (l *Leadership) Key() string { return l.key }

func (l *Leadership) watch(lockLost <-chan struct{}) {
	select {
	case <-lockLost:
		l.k.c.log.Warn("leadership lost: the lock is no longer ours", "key", l.key, "session", l.k.session)
	case <-l.k.dead:
		l.k.c.log.Warn("leadership lost", "key", l.key, "session", l.k.session, "err", l.k.deadErr())
	case <-l.released:
	}
	l.lostOnce.Do(func() { close(l.lost) })
}

// Release gives the lock up at once, so a standby takes over without lock-delay, then
// destroys the session and deregisters the heartbeat. Calling it again returns the
// first result.
func (l *Leadership) Release(ctx context.Context) error {
	l.releaseOnce.Do(func() {
		close(l.released)
		c := l.k.c
		// Release before destroying: destroying invalidates the session, which
		// holds the key from the standbys for lock-delay.
		pair := &api.KVPair{Key: l.key, Session: l.k.session, Flags: api.LockFlagValue}
		var errs []error
		if _, _, err := c.api.KV().Release(pair, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
			errs = append(errs, fmt.Errorf("release lock %s: %w", l.key, c.classify(ctx, err)))
		}
		errs = append(errs, l.k.leave(ctx))
		l.releaseErr = errors.Join(errs...)
		l.lostOnce.Do(func() { close(l.lost) })
	})
	return l.releaseErr
}

// contender is one Lead's footprint in Consul: a heartbeat service with its TTL check
// and a session bound to that check.
type contender struct {
	c                *Client
	key              string
	ttl              time.Duration
	serviceID        string
	checkID, session string

	stop     chan struct{} // closed to stop the heartbeat
	stopOnce sync.Once
	beatDone chan struct{} // closed when the heartbeat has stopped
	dead     chan struct{} // closed when the heartbeat gives up
	deadMu   sync.Mutex
	deadWhy  error
}

func (c *Client) enter(ctx context.Context, key string, opts LeaderOptions) (*contender, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("contender id: %w", err)
	}
	id := "drover-leader-" + hex.EncodeToString(b[:])
	k := &contender{
		c: c, key: key, ttl: opts.CheckTTL, serviceID: id, checkID: id + "-heartbeat",
		stop: make(chan struct{}), beatDone: make(chan struct{}), dead: make(chan struct{}),
	}
	reg := &api.AgentServiceRegistration{
		ID:   id,
		Name: LeaderService,
		Meta: map[string]string{"key": key, "holder": opts.Holder},
		Check: &api.AgentServiceCheck{
			CheckID:                        k.checkID,
			Name:                           "drover leader heartbeat",
			TTL:                            opts.CheckTTL.String(),
			Status:                         api.HealthPassing,
			DeregisterCriticalServiceAfter: leaderDeregisterAfter.String(),
		},
	}
	opt := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	if err := c.api.Agent().ServiceRegisterOpts(reg, opt); err != nil {
		return nil, fmt.Errorf("register heartbeat %s: %w", id, c.classify(ctx, err))
	}
	// The TTL clock runs from registration: beat from now on.
	go k.heartbeat()

	fail := func(err error) (*contender, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return nil, errors.Join(err, k.leave(cctx))
	}
	if err := c.waitCatalogCheck(ctx, k.checkID); err != nil {
		return fail(err)
	}
	session, _, err := c.api.Session().Create(&api.SessionEntry{
		Name:          "drover leader " + key,
		LockDelay:     opts.LockDelay,
		Behavior:      api.SessionBehaviorRelease,
		NodeChecks:    []string{"serfHealth"},
		ServiceChecks: []api.ServiceCheck{{ID: k.checkID}},
	}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return fail(fmt.Errorf("create session for %s: %w", key, c.classify(ctx, err)))
	}
	k.session = session
	return k, nil
}

// waitCatalogCheck follows the leader service's checks in the catalog until checkID
// is there and passing: the agent syncs its registrations to the servers a moment
// later, and a session can only name checks the servers know.
func (c *Client) waitCatalogCheck(ctx context.Context, checkID string) error {
	ctx, cancel := context.WithTimeout(ctx, catalogWait)
	defer cancel()
	var index uint64
	last := "not in the catalog"
	for {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: catalogWait}).WithContext(ctx)
		checks, meta, err := c.api.Health().Checks(LeaderService, q)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("wait for heartbeat check %s in the catalog (%s): %w", checkID, last, ctx.Err())
			}
			return fmt.Errorf("wait for heartbeat check %s in the catalog: %w", checkID, c.classify(ctx, err))
		}
		for _, ch := range checks {
			if ch.CheckID != checkID {
				continue
			}
			if ch.Status == api.HealthPassing {
				return nil
			}
			last = ch.Status
		}
		if meta.LastIndex < index {
			index = 0
		} else {
			index = meta.LastIndex
		}
	}
}

// heartbeat keeps the TTL check passing every CheckTTL/4. It gives up (closes dead)
// once the check must have turned critical on the agent, measured from the start of
// the last successful update, a beat early: the holder must stop acting before
// Consul can hand the lock to another.
func (k *contender) heartbeat() {
	defer close(k.beatDone)
	every := k.ttl / 4
	lastOK := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-tick.C:
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), every)
		err := k.c.api.Agent().UpdateTTLOpts(k.checkID, "", api.HealthPassing, (&api.QueryOptions{}).WithContext(ctx))
		err = k.c.classify(context.Background(), err)
		cancel()
		switch {
		case err == nil:
			lastOK = start
		case errors.Is(err, ErrNotFound):
			// Deregistered behind our back: Consul invalidated the session with it.
			k.die(fmt.Errorf("heartbeat check %s: %w", k.checkID, err))
			return
		case time.Since(lastOK) >= k.ttl-every:
			k.die(fmt.Errorf("heartbeat check %s: no update for %s: %w", k.checkID, time.Since(lastOK).Round(time.Millisecond), err))
			return
		default:
			k.c.log.Warn("leader heartbeat failed, retrying", "key", k.key, "check", k.checkID, "err", err)
		}
	}
}

func (k *contender) die(err error) {
	k.deadMu.Lock()
	k.deadWhy = err
	k.deadMu.Unlock()
	close(k.dead)
}

func (k *contender) deadErr() error {
	k.deadMu.Lock()
	defer k.deadMu.Unlock()
	if k.deadWhy == nil {
		return errors.New("heartbeat stopped")
	}
	return k.deadWhy
}

// stopHeartbeat stops beating without telling Consul, as a killed process would.
func (k *contender) stopHeartbeat() {
	k.stopOnce.Do(func() { close(k.stop) })
	<-k.beatDone
}

// leave stops the heartbeat, destroys the session (releasing any lock it still
// holds, after lock-delay) and deregisters the heartbeat service.
func (k *contender) leave(ctx context.Context) error {
	k.stopHeartbeat()
	var errs []error
	if k.session != "" {
		if _, err := k.c.api.Session().Destroy(k.session, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
			errs = append(errs, fmt.Errorf("destroy session %s: %w", k.session, k.c.classify(ctx, err)))
		}
	}
	if err := k.c.api.Agent().ServiceDeregisterOpts(k.serviceID, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		err = k.c.classify(ctx, err)
		if !errors.Is(err, ErrNotFound) {
			errs = append(errs, fmt.Errorf("deregister heartbeat %s: %w", k.serviceID, err))
		}
	}
	return errors.Join(errs...)
}
