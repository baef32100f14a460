package discovery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// ErrNotLeader is wrapped by Guard's error, and is the cause of a guarded context's
// cancellation, once the leadership has lapsed.
var ErrNotLeader = errors.New("not the leader")

// Leadership is a held lock. Release it when done: it owns a session, a heartbeat
// and a registration in Consul.
//
// Fencing: the leadership lapses when Lost closes, when Release is called, or when
// its lease ends, whichever comes first. The lease ends CheckTTL after the send time
// of the last heartbeat the agent acknowledged: Consul cannot invalidate the session
// sooner (its check turns critical CheckTTL after the last update it applied), and a
// standby is refused the lock for LockDelay after that. So work done under Guard
// stops before anyone else can hold the lock, and at most LockDelay after the lock is
// gone however the leader was cut off: killed agent, blocked connection, or a
// process stopped and resumed (the lease is measured on the monotonic clock).
type Leadership struct {
	key string
	k   *contender

	lost     chan struct{}
	lostOnce sync.Once
	released chan struct{}

	mu       sync.Mutex
	cause    error                              // why it lapsed; nil while it holds
	lapsedAt time.Time                          // when it lapsed
	guards   map[uint64]context.CancelCauseFunc // live Guard contexts
	nextID   uint64

	releaseOnce sync.Once
	releaseErr  error
}

func newLeadership(key string, k *contender) *Leadership {
	return &Leadership{
		key: key, k: k, lost: make(chan struct{}), released: make(chan struct{}),
		guards: map[uint64]context.CancelCauseFunc{},
	}
}

// Lost is closed when the leadership ends: the session was invalidated (the
// heartbeat check failed, the session was destroyed, the agent died), the lease ran
// out (Consul could not be reached for about the check TTL), or Release was called.
// A lost leadership still needs Release to clean up its session and heartbeat.
func (l *Leadership) Lost() <-chan struct{} { return l.lost }

// Session is the Consul session holding the lock.
func (l *Leadership) Session() string { return l.k.session }

// ValidUntil is the end of the current lease: the leadership holds at most until
// then unless a heartbeat extends it. Once the leadership has lapsed, it is the
// instant it lapsed (or the lease's end, if earlier), in the past.
func (l *Leadership) ValidUntil() time.Time {
	lease := l.k.lease()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cause != nil && l.lapsedAt.Before(lease) {
		return l.lapsedAt
	}
	return lease
}

// Guard returns a context derived from ctx for one step that must be done only by
// the leader (anything that mutates the fleet). It fails at once, wrapping
// ErrNotLeader, when the leadership has lapsed. Otherwise the context is cancelled
// the moment the leadership lapses, with a cause wrapping ErrNotLeader
// (context.Cause). Call the CancelFunc when the step is done. Take a fresh Guard
// for each step, right before it: its first check is synchronous, so a process
// resumed after a stop past its lease starts no new step.
func (l *Leadership) Guard(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if err := l.check(); err != nil {
		return nil, nil, err
	}
	gctx, cancel := context.WithCancelCause(ctx)
	l.mu.Lock()
	if l.cause != nil {
		err := l.cause
		l.mu.Unlock()
		cancel(err)
		return nil, nil, err
	}
	id := l.nextID
	l.nextID++
	l.guards[id] = cancel
	l.mu.Unlock()
	done := func() {
		l.mu.Lock()
		delete(l.guards, id)
		l.mu.Unlock()
		cancel(context.Canceled)
	}
	return &guarded{Context: gctx, l: l}, done, nil
}

// guarded checks the lease again whenever its Err is asked for: after a stop and
// resume, the goroutine that ends the lease may not have run yet when a step asks.
type guarded struct {
	context.Context
	l *Leadership
}

func (g *guarded) Err() error {
	if err := g.Context.Err(); err != nil {
		return err
	}
	_ = g.l.check()
	return g.Context.Err()
}

// check returns the lapse's cause, ending the leadership first if the lease is over.
func (l *Leadership) check() error {
	if end := l.k.lease(); !time.Now().Before(end) {
		l.end(l.expired(end))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cause
}

func (l *Leadership) expired(end time.Time) error {
	return fmt.Errorf("%w: lease on %s ended at %s: no heartbeat acknowledged in the check TTL (%s)",
		ErrNotLeader, l.key, end.Format(time.RFC3339Nano), l.k.ttl)
}

// end makes the leadership lapse: it cancels every Guard context, then closes Lost.
// The first cause stays.
func (l *Leadership) end(cause error) {
	l.mu.Lock()
	var guards map[uint64]context.CancelCauseFunc
	if l.cause == nil {
		l.cause, l.lapsedAt = cause, time.Now()
		guards, l.guards = l.guards, map[uint64]context.CancelCauseFunc{}
	}
	cause = l.cause
	l.mu.Unlock()
	for _, cancel := range guards {
		cancel(cause)
	}
	l.lostOnce.Do(func() { close(l.lost) })
}

// watch ends the leadership on the first sign it is over: the lock monitor saw the
// key change hands, the heartbeat gave up, Release was called, or the lease ran out
// (a timer on the monotonic clock, which fires late but fires after a stop).
func (l *Leadership) watch(lockLost <-chan struct{}) {
	log := l.k.c.log
	timer := time.NewTimer(time.Until(l.k.lease()))
	defer timer.Stop()
	for {
		select {
		case <-lockLost:
			log.Warn("leadership lost: the lock is no longer ours", "key", l.key, "session", l.k.session)
			l.end(fmt.Errorf("%w: lock %s no longer held by session %s", ErrNotLeader, l.key, l.k.session))
			return
		case <-l.k.dead:
			err := l.k.deadErr()
			log.Warn("leadership lost", "key", l.key, "session", l.k.session, "err", err)
			l.end(fmt.Errorf("%w: %s: %w", ErrNotLeader, l.key, err))
			return
		case <-l.released:
			return
		case <-timer.C:
			end := l.k.lease()
			if left := time.Until(end); left > 0 {
				timer.Reset(left)
				continue
			}
			err := l.expired(end)
			log.Warn("leadership lost", "key", l.key, "session", l.k.session, "err", err)
			l.end(err)
			return
		}
	}
}

// Release gives the lock up at once, so a standby takes over without lock-delay, then
// destroys the session and deregisters the heartbeat. Guard contexts are cancelled
// before the lock is given up. Calling it again returns the first result.
func (l *Leadership) Release(ctx context.Context) error {
	l.releaseOnce.Do(func() {
		l.end(fmt.Errorf("%w: leadership of %s released", ErrNotLeader, l.key))
		close(l.released)
		c := l.k.c
		// Release before destroying: destroying invalidates the session, which
		// holds the key from the standbys for lock-delay.
		pair := &api.KVPair{Key: l.key, Session: l.k.session, Flags: api.LockFlagValue}
		var errs []error
		cctx, cancel := c.call(ctx)
		_, _, err := c.api.KV().Release(pair, (&api.WriteOptions{}).WithContext(cctx))
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("release lock %s: %w", l.key, c.classify(ctx, err)))
		}
		errs = append(errs, l.k.leave(ctx))
		l.releaseErr = errors.Join(errs...)
	})
	return l.releaseErr
}
