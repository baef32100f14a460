package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/drover-dev/drover/internal/backoff"
	"github.com/drover-dev/drover/sources"
)

// Runner drives passes: it reads the source every Interval (and at once after a pass that
// changed something, to confirm the fleet matches), keeps the last good revision when the
// source fails, and backs off on errors.
type Runner struct {
	Source     Source
	Reconciler *Reconciler
	Interval   time.Duration
	// Once: return nil as soon as a pass finds the fleet matching the commit, or an error
	// when the revision fails, is rolled back, or cannot be read.
	Once bool
	Log  *slog.Logger
	// MaxBackoff caps the retry delay after errors. Default: Interval.
	MaxBackoff time.Duration
	// Wake, optional, starts the next pass early: a health check changed, so a VM may
	// have died. Passes stay level-based; Wake only moves one sooner.
	Wake <-chan struct{}
	// Metrics, optional, is told how long each pass took and whether it failed.
	Metrics PassMetrics

	mu     sync.Mutex
	status Status
	// desired is the last good revision and when the source was last read well.
	desired   sources.Revision
	lastFetch time.Time
	// running while Run loops. begun counts the rounds (a source read, then a pass)
	// that started, done those that ended, roundErr the last one's error; progress is
	// closed and replaced when a round ends. kick starts a round at once (Reconcile).
	running  bool
	begun    uint64
	done     uint64
	roundErr error
	progress chan struct{}
	kick     chan struct{}
}

// flushTimeout bounds the wait for the last events to be stored when the loop stops.
const flushTimeout = 10 * time.Second

// ErrNotRunning is returned by Reconcile when no pass runs in this process: it is not
// started, has stopped, or stands by for the leader lock.
var ErrNotRunning = errors.New("no reconcile loop running here (standing by, or stopped)")

// Reconcile starts a round now instead of at the next interval, and returns once a
// round that began after the call has read the source and started its pass, with that
// round's error (reading the source, or the pass's own). Rollouts the pass starts go on
// in the background.
func (r *Runner) Reconcile(ctx context.Context) error {
	r.mu.Lock()
	if !r.running {
		r.mu.Unlock()
		return ErrNotRunning
	}
	target := r.begun + 1
	kick := r.kickLocked()
	r.mu.Unlock()
	select {
	case kick <- struct{}{}:
	default: // a kick is already pending
	}
	for {
		r.mu.Lock()
		switch {
		case r.done >= target:
			err := r.roundErr
			r.mu.Unlock()
			return err
		case !r.running:
			r.mu.Unlock()
			return ErrNotRunning
		}
		progress := r.progressLocked()
		r.mu.Unlock()
		select {
		case <-progress:
		case <-ctx.Done():
			return fmt.Errorf("reconcile: %w", ctx.Err())
		}
	}
}

// Desired is the last good revision read (ok false before the first) and when the
// source was last read without error.
func (r *Runner) Desired() (rev sources.Revision, lastFetch time.Time, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.desired, r.lastFetch, r.desired.Fleet != nil
}

func (r *Runner) kickLocked() chan struct{} {
	if r.kick == nil {
		r.kick = make(chan struct{}, 1)
	}
	return r.kick
}

func (r *Runner) progressLocked() chan struct{} {
	if r.progress == nil {
		r.progress = make(chan struct{})
	}
	return r.progress
}

// beginRound counts a round that starts now.
func (r *Runner) beginRound() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.begun++
	return r.begun
}

// endRound records round n's outcome and wakes Reconcile's waiters.
func (r *Runner) endRound(n uint64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done, r.roundErr = n, err
	close(r.progressLocked())
	r.progress = nil
}

func (r *Runner) setRunning(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running = on
	close(r.progressLocked())
	r.progress = nil
}

// Status is what the runner last saw, for the status endpoint.
type Status struct {
	// Revision is the full commit SHA acted on; Ref is what the source tracks, Tag the
	// tag it resolved through, if any.
	Revision  string    `json:"revision"`
	Ref       string    `json:"ref,omitempty"`
	Tag       string    `json:"tag,omitempty"`
	LastPass  time.Time `json:"last_pass"`
	Converged bool      `json:"converged"`
	Error     string    `json:"error,omitempty"`
	Plan      string    `json:"plan,omitempty"`
	// InProgress are the services whose rollout runs in the background.
	InProgress []string `json:"in_progress,omitempty"`
}

// Status returns a copy of the latest status.
func (r *Runner) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// Run loops until ctx ends (nil) or, with Once, until the outcome is known. Rollouts run
// in the background between passes; Run waits for them before it returns, so cancelling
// ctx ends them at their next step, as a signal always did.
func (r *Runner) Run(ctx context.Context) error {
	defer func() {
		r.Reconciler.Wait()
		// The last rollouts' events are stored before the process may exit.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
		defer cancel()
		if err := r.Reconciler.FlushEvents(fctx); err != nil {
			r.Reconciler.log.Warn("some events were not stored before stopping", "err", err)
		}
	}()
	r.setRunning(true)
	defer r.setRunning(false)
	r.mu.Lock()
	kick := r.kickLocked()
	r.mu.Unlock()
	log := r.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	maxBackoff := r.MaxBackoff
	if maxBackoff == 0 {
		maxBackoff = r.Interval
	}
	bo := backoff.Backoff{Min: min(time.Second, maxBackoff), Max: maxBackoff}
	var (
		last    sources.Revision
		haveRev bool
	)
	for {
		round := r.beginRound()
		rev, err := r.Source.Read(ctx)
		if err == nil {
			// A commit over the host budget is held like one that does not parse.
			err = r.Reconciler.Admit(rev)
		}
		switch {
		case err == nil:
			if !haveRev || rev.Commit != last.Commit {
				log.Info("tracking revision", "revision", rev.Commit, "ref", rev.Ref, "tag", rev.Tag, "services", len(rev.Fleet.Services))
			}
			last, haveRev = rev, true
			r.setDesired(rev)
		case ctx.Err() != nil:
			return nil
		default:
			r.setError(last, err)
			if r.Once {
				return fmt.Errorf("read desired state: %w", err)
			}
			// Keep reconciling the last good revision: the fleet stays as the last valid
			// commit says while the source is broken.
			if haveRev {
				log.Error("reading desired state failed; keeping the last good revision", "revision", shortRev(last.Commit), "err", err)
			} else {
				log.Error("reading desired state failed; no revision yet", "err", err)
			}
		}

		var wait time.Duration
		if !haveRev {
			r.endRound(round, err)
		}
		if haveRev {
			passStart := time.Now()
			res, perr := r.Reconciler.Start(ctx, last)
			if ctx.Err() != nil {
				return nil
			}
			r.observePass(time.Since(passStart), res, perr)
			converged := perr == nil && res.Err == nil && !res.Changed && len(res.InProgress) == 0
			r.record(last, err, res, perr, converged)
			r.endRound(round, errors.Join(err, perr))
			switch {
			case perr != nil:
				log.Error("pass failed, nothing changed", "revision", shortRev(last.Commit), "err", perr)
				if r.Once {
					return perr
				}
			case res.Err != nil:
				log.Error("pass finished with errors", "revision", shortRev(last.Commit), "err", res.Err)
				if r.Once {
					// The outcome is known; what is still rolling out finishes first.
					r.Reconciler.Wait()
					return res.Err
				}
			case converged:
				log.Debug("fleet matches the commit", "revision", shortRev(last.Commit))
				if r.Once {
					return nil
				}
			}
			if len(res.InProgress) > 0 {
				log.Debug("rollouts in progress", "revision", shortRev(last.Commit), "services", res.InProgress)
			}
			if res.Changed && perr == nil && len(res.InProgress) == 0 {
				// Confirm at once what the pass did; the next pass is cheap when it did all.
				bo.Reset()
				continue
			}
			// A held revision is a settled state, not a fault, and a rollout in progress
			// is work, not a fault: keep polling at the interval so a newer commit is
			// picked up promptly (a rollout that ends wakes the loop at once).
			if perr == nil && err == nil && (res.Err == nil || onlyHeld(res.Err)) {
				bo.Reset()
				wait = r.Interval
			}
		}
		finished := r.Reconciler.Finished()
		if wait == 0 {
			wait = bo.Next()
			// Backing off: a rollout that fails at once (an image server down, say)
			// must not wake the next attempt at once, in a loop.
			finished = nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-r.Wake:
			t.Stop()
		case <-kick:
			t.Stop()
		case <-finished:
			t.Stop()
		}
	}
}

// observePass reports a pass to Metrics: failed when it could not run or reported
// anything but held revisions.
func (r *Runner) observePass(d time.Duration, res Result, perr error) {
	if r.Metrics == nil {
		return
	}
	err := perr
	if err == nil && res.Err != nil && !onlyHeld(res.Err) {
		err = res.Err
	}
	r.Metrics.ObservePass(d, err)
}

func (r *Runner) setDesired(rev sources.Revision) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.desired, r.lastFetch = rev, time.Now().UTC()
}

func (r *Runner) setError(last sources.Revision, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status.Error = err.Error()
	r.status.Converged = false
	if last.Commit != "" {
		r.status.Revision, r.status.Ref, r.status.Tag = last.Commit, last.Ref, last.Tag
	}
}

// record sets the status after a pass over last. srcErr is this round's error
// reading the source, if any: the pass ran on the last good revision, and the status
// keeps saying why the newest one could not be read.
func (r *Runner) record(last sources.Revision, srcErr error, res Result, perr error, converged bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = Status{Revision: last.Commit, Ref: last.Ref, Tag: last.Tag, LastPass: time.Now().UTC(), Converged: converged, Plan: res.Plan.String(), InProgress: res.InProgress}
	if err := errors.Join(srcErr, perr, res.Err); err != nil {
		r.status.Error = err.Error()
	}
}

// onlyHeld reports whether err consists only of HeldErrors.
func onlyHeld(err error) bool {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			if !onlyHeld(e) {
				return false
			}
		}
		return true
	}
	var held *HeldError
	return errors.As(err, &held)
}
