package discovery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

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

	leaseMu sync.Mutex
	// leaseEnd is the earliest instant the heartbeat check can turn critical, and so
	// the session (and the lock) be invalidated: the send time of the last update
	// the agent acknowledged, or of the registration, plus the TTL. The agent
	// applied that update after it was sent, so the check cannot turn critical any
	// sooner. It carries a monotonic reading (time.Now), which keeps running while
	// the process is stopped: a SIGSTOPped leader resumed later finds it past.
	leaseEnd time.Time
}

// lease is the current end of the lease; see leaseEnd.
func (k *contender) lease() time.Time {
	k.leaseMu.Lock()
	defer k.leaseMu.Unlock()
	return k.leaseEnd
}

// extend moves the lease to sent+TTL after an update sent at sent was acknowledged.
// It refuses (false) when the lease had already ended at sent: the check may have
// turned critical before the update revived it, and a critical check invalidates the
// session for good, whatever the check does next.
func (k *contender) extend(sent time.Time) bool {
	k.leaseMu.Lock()
	defer k.leaseMu.Unlock()
	if !sent.Before(k.leaseEnd) {
		return false
	}
	k.leaseEnd = sent.Add(k.ttl)
	return true
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
		Name: leaderService,
		Meta: map[string]string{"key": key, "holder": opts.Holder},
		Check: &api.AgentServiceCheck{
			CheckID:                        k.checkID,
			Name:                           "drover leader heartbeat",
			TTL:                            opts.CheckTTL.String(),
			Status:                         api.HealthPassing,
			DeregisterCriticalServiceAfter: leaderDeregisterAfter.String(),
		},
	}
	cctx, cancel := c.call(ctx)
	defer cancel()
	sent := time.Now()
	k.leaseEnd = sent.Add(k.ttl)
	opt := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(cctx)
	if err := c.api.Agent().ServiceRegisterOpts(reg, opt); err != nil {
		return nil, fmt.Errorf("register heartbeat %s: %w", id, c.classify(ctx, err))
	}
	// The TTL clock runs from registration: beat from now on.
	go k.heartbeat()

	fail := func(err error) (*contender, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		return nil, errors.Join(err, k.leave(cctx))
	}
	if err := c.waitCatalogCheck(ctx, k.checkID); err != nil {
		return fail(err)
	}
	cctx, cancel = c.call(ctx)
	defer cancel()
	session, _, err := c.api.Session().Create(&api.SessionEntry{
		Name:          "drover leader " + key,
		LockDelay:     opts.LockDelay,
		Behavior:      api.SessionBehaviorRelease,
		NodeChecks:    []string{"serfHealth"},
		ServiceChecks: []api.ServiceCheck{{ID: k.checkID}},
	}, (&api.WriteOptions{}).WithContext(cctx))
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
	last := "not in the catalog"
	var checks api.HealthChecks
	err := c.follow(ctx, blockingQuery{
		get: func(q *api.QueryOptions) (*api.QueryMeta, error) {
			var meta *api.QueryMeta
			var err error
			checks, meta, err = c.api.Health().Checks(leaderService, q)
			return meta, err
		},
		answer: func(bool) (bool, error) {
			for _, ch := range checks {
				if ch.CheckID != checkID {
					continue
				}
				if ch.Status == api.HealthPassing {
					return true, nil
				}
				last = ch.Status
			}
			return false, nil
		},
	})
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("wait for heartbeat check %s in the catalog (%s): %w", checkID, last, ctx.Err())
	default:
		return fmt.Errorf("wait for heartbeat check %s in the catalog: %w", checkID, err)
	}
}

// heartbeat keeps the TTL check passing every CheckTTL/4, extending the lease with
// each acknowledged update. It gives up (closes dead) a beat before the lease ends
// without an acknowledged update, or when an update came too late to extend it: the
// holder must stop acting before Consul can hand the lock to another.
func (k *contender) heartbeat() {
	defer close(k.beatDone)
	every := k.ttl / 4
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-tick.C:
		}
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), min(every, k.c.timeout))
		err := k.c.api.Agent().UpdateTTLOpts(k.checkID, "", api.HealthPassing, (&api.QueryOptions{}).WithContext(ctx))
		err = k.c.classify(context.Background(), err)
		cancel()
		switch {
		case err == nil:
			if !k.extend(sent) {
				k.die(fmt.Errorf("heartbeat check %s: lease ended at %s, before the update sent at %s",
					k.checkID, k.lease().Format(time.RFC3339Nano), sent.Format(time.RFC3339Nano)))
				return
			}
		case errors.Is(err, ErrNotFound):
			// Deregistered behind our back: Consul invalidated the session with it.
			k.die(fmt.Errorf("heartbeat check %s: %w", k.checkID, err))
			return
		case time.Until(k.lease()) <= every:
			k.die(fmt.Errorf("heartbeat check %s: no acknowledged update for %s: %w",
				k.checkID, (k.ttl - time.Until(k.lease())).Round(time.Millisecond), err))
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
		cctx, cancel := k.c.call(ctx)
		_, err := k.c.api.Session().Destroy(k.session, (&api.WriteOptions{}).WithContext(cctx))
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("destroy session %s: %w", k.session, k.c.classify(ctx, err)))
		}
	}
	cctx, cancel := k.c.call(ctx)
	defer cancel()
	if err := k.c.api.Agent().ServiceDeregisterOpts(k.serviceID, (&api.QueryOptions{}).WithContext(cctx)); err != nil {
		err = k.c.classify(ctx, err)
		if !errors.Is(err, ErrNotFound) {
			errs = append(errs, fmt.Errorf("deregister heartbeat %s: %w", k.serviceID, err))
		}
	}
	return errors.Join(errs...)
}
