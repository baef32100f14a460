package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/drover-dev/drover/discovery"
)

// leaderKeyPrefix holds one lock per fleet in Consul's KV store.
const leaderKeyPrefix = "drover/leader/"

// maxLeadBackoff caps the wait between attempts to reach Consul for the lock.
const maxLeadBackoff = 30 * time.Second

// leaderKey is the fleet's lock: Drovers of the same fleet elect one leader; Drovers of
// different fleets never wait on each other.
func leaderKey(o options) string {
	return leaderKeyPrefix + o.fleetName()
}

// fleetName is the fleet's name: --fleet, or else fleetID of what it tracks.
func (o options) fleetName() string {
	if o.fleet != "" {
		return o.fleet
	}
	return fleetID(o.repo, o.branch, o.path)
}

// fleetID is a short, stable name for a fleet. Equivalent spellings of the same
// fleet (a relative or absolute local path, a trailing slash, ./fleet.yaml) give the
// same ID, so two Drovers started differently still share one lock.
func fleetID(repo, branch, path string) string {
	h := sha256.New()
	for _, part := range []string{canonicalRepo(repo), branch, filepath.ToSlash(filepath.Clean(path))} {
		h.Write([]byte(part))
		h.Write([]byte{0}) // no two (repo, branch, path) triples hash the same bytes
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

func canonicalRepo(repo string) string {
	repo = strings.TrimRight(repo, "/")
	if strings.Contains(repo, "://") {
		return repo
	}
	// scp-like git syntax, user@host:path: a colon before any slash.
	if i := strings.Index(repo, ":"); i > 0 && !strings.Contains(repo[:i], "/") {
		return repo
	}
	if abs, err := filepath.Abs(repo); err == nil {
		return abs
	}
	return repo
}

// holderName tells standbys who leads.
func holderName() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s pid %d", host, os.Getpid())
}

// lead runs work only while this process holds the fleet's lock in Consul. When the
// lock is lost, work's context is cancelled (the reconciler finishes the step it has
// started) and lead waits for the lock again. It returns work's result when work ends
// on its own, and nil when ctx ends. Errors taking the lock are retried with backoff,
// except with once, where Drover must not hang on a Consul that is down.
func lead(ctx context.Context, c *discovery.Client, key string, once bool, log *slog.Logger, work func(context.Context) error) error {
	holder := holderName()
	opts := discovery.LeaderOptions{
		Holder: holder,
		OnStandby: func(h discovery.Holder) {
			log.Info("standing by, leader is "+h.Value, "key", key, "leader_session", h.Session)
		},
	}
	var backoff time.Duration
	for {
		l, err := c.Lead(ctx, key, opts)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if once {
				return fmt.Errorf("take leader lock: %w", err)
			}
			backoff = min(max(2*backoff, time.Second), maxLeadBackoff)
			log.Error("taking the leader lock failed; retrying", "key", key, "retry_in", backoff, "err", err)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		backoff = 0
		log.Info("became leader", "key", key, "session", l.Session(), "holder", holder)
		lost, err := workWhileLeading(ctx, l, work)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if rerr := l.Release(rctx); rerr != nil && !errors.Is(rerr, discovery.ErrUnavailable) {
			log.Warn("release leader lock", "key", key, "err", rerr)
		}
		cancel()
		if !lost || err != nil {
			return err
		}
		log.Warn("leadership lost; stopped after the current step, standing by", "key", key)
	}
}

// workWhileLeading runs work until it returns or the leadership is lost; lost says
// which, and err is work's result either way.
func workWhileLeading(ctx context.Context, l *discovery.Leadership, work func(context.Context) error) (lost bool, err error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- work(wctx) }()
	select {
	case err = <-done:
		return false, err
	case <-l.Lost():
		cancel()
		err = <-done
		return ctx.Err() == nil, err
	}
}
