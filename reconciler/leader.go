package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/internal/backoff"
)

// leaderKeyPrefix holds one lock per fleet in Consul's KV store.
const leaderKeyPrefix = "drover/leader/"

// LeaderKey is the fleet's lock: Drovers of the same fleet elect one leader; Drovers of
// different fleets never wait on each other.
func LeaderKey(fleet string) string { return leaderKeyPrefix + fleet }

// Elector is what Leader needs from service discovery: a lock that one contender
// holds at a time, lost when the holder falls silent.
type Elector interface {
	Lead(ctx context.Context, key string, opts discovery.LeaderOptions) (*discovery.Leadership, error)
}

var _ Elector = (*discovery.Client)(nil)

// Leader runs work only while this process holds its fleet's lock. When the lock is
// lost, work's context is cancelled and its mutating steps are fenced (they fail once
// the lease can no longer be trusted: WithFence), and Leader waits for the lock again.
type Leader struct {
	Elector Elector
	Fleet   string
	// Holder names this process to the standbys; default "<host> pid <pid>".
	Holder string
	// Once: a failure to take the lock is returned instead of retried, so `run --once`
	// does not hang on a Consul that is down.
	Once bool
	Log  *slog.Logger
	// Backoff paces the attempts to reach Consul for the lock. Zero: 1 s to 30 s.
	Backoff backoff.Backoff
	// Reconciler, optional, records leader_acquired and leader_lost in its events.
	Reconciler *Reconciler

	leading atomic.Bool
}

// Leading reports whether this process holds the fleet's lock now.
func (l *Leader) Leading() bool { return l.leading.Load() }

// emit records a leadership change under the term's fence: a leader whose lease
// lapsed stores nothing (its successor's leader_acquired tells the change), one that
// hands the lock back stores its leader_lost before it does.
func (l *Leader) emit(ctx context.Context, lease *discovery.Leadership, kind EventKind, reason string) {
	if l.Reconciler == nil {
		return
	}
	fctx := WithFence(ctx, lease)
	l.Reconciler.emit(fctx, Event{Kind: kind, Reason: reason})
	fl, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
	defer cancel()
	_ = l.Reconciler.FlushEvents(fl)
}

// releaseTimeout bounds handing the lock back, so a stopping Drover exits even when
// Consul does not answer (the lock then lapses with the heartbeat check).
const releaseTimeout = 10 * time.Second

// Run calls work while this process leads, again after each lost and regained lock. It
// returns work's result when work ends on its own, and nil when ctx ends.
func (l *Leader) Run(ctx context.Context, work func(context.Context) error) error {
	log := l.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	holder := l.Holder
	if holder == "" {
		holder = holderName()
	}
	bo := l.Backoff
	if bo.Min == 0 {
		bo.Min, bo.Max = time.Second, 30*time.Second
	}
	key := LeaderKey(l.Fleet)
	opts := discovery.LeaderOptions{
		Holder: holder,
		OnStandby: func(h discovery.Holder) {
			log.Info("standing by, leader is "+h.Value, "key", key, "leader_session", h.Session)
		},
	}
	for {
		lease, err := l.Elector.Lead(ctx, key, opts)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if l.Once {
				return fmt.Errorf("take leader lock %s: %w", key, err)
			}
			wait := bo.Next()
			log.Error("taking the leader lock failed; retrying", "key", key, "retry_in", wait, "err", err)
			if !backoff.Sleep(ctx, wait) {
				return nil
			}
			continue
		}
		bo.Reset()
		log.Info("became leader", "key", key, "session", lease.Session(), "holder", holder)
		l.leading.Store(true)
		l.emit(ctx, lease, EventLeaderAcquired, holder+" leads")
		lost, err := workWhileLeading(ctx, lease, work)
		l.leading.Store(false)
		if lost {
			l.emit(ctx, lease, EventLeaderLost, holder+": leadership lapsed")
		} else {
			l.emit(ctx, lease, EventLeaderLost, holder+" stopped leading")
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		if rerr := lease.Release(rctx); rerr != nil && !errors.Is(rerr, discovery.ErrUnavailable) {
			log.Warn("release leader lock", "key", key, "err", rerr)
		}
		cancel()
		if !lost || err != nil {
			return err
		}
		log.Warn("leadership lapsed; stopped acting, standing by", "key", key)
	}
}

// workWhileLeading runs work until it returns or the leadership is lost; lost says
// which, and err is work's result either way.
func workWhileLeading(ctx context.Context, lease *discovery.Leadership, work func(context.Context) error) (lost bool, err error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	// Every mutating step of the term runs under the lease (see fenced): a leader
	// resumed after a stop past its lease starts none, even before it sees Lost.
	go func() { done <- work(WithFence(wctx, lease)) }()
	select {
	case err = <-done:
		return false, err
	case <-lease.Lost():
		cancel()
		err = <-done
		return ctx.Err() == nil, err
	}
}

// holderName tells standbys who leads.
func holderName() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s pid %d", host, os.Getpid())
}
