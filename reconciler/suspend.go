package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strings"
	"unicode"
)

// Operators' orders to the fleet: suspend, resume, retry. Suspensions are kept in the
// FailureStore (drover/fleets/<fleet>/suspended/<service>) so that a restarted Drover and
// a standby taking over honour them; a pass reads them like the failed revisions.

// ErrNotHeld is returned by Retry for a service with no held revision.
var ErrNotHeld = errors.New("no held revision")

// ErrUnknownService is returned by Suspend for a service neither the fleet nor any VM has.
var ErrUnknownService = errors.New("no such service")

// serviceRE is the fleet file's rule for service names.
var serviceRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)

const maxSuspendReason = 512

func validService(service string) error {
	if !serviceRE.MatchString(service) {
		return fmt.Errorf("service %q: want a service name ([a-z][a-z0-9-]{0,30})", truncate(service, 64))
	}
	return nil
}

func (r *Reconciler) suspendedPrefix() string { return fleetKV(r.cfg.Fleet) + "suspended/" }

// suspensions are the suspended services. Planning without them could act on one, so an
// unreadable store fails the pass.
func (r *Reconciler) suspensions(ctx context.Context) (map[string]Suspended, error) {
	if r.cfg.Failures == nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		return maps.Clone(r.suspended), nil
	}
	prefix := r.suspendedPrefix()
	stored, err := r.cfg.Failures.KVList(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("read suspended services: %w", err)
	}
	out := make(map[string]Suspended, len(stored))
	for key, raw := range stored {
		var s Suspended
		if err := json.Unmarshal(raw, &s); err != nil {
			// Still suspended: an unreadable record must not let a pass act on it.
			r.log.Warn("unreadable suspension record; the service stays suspended", "key", key, "err", err)
		}
		out[strings.TrimPrefix(key, prefix)] = s
	}
	return out, nil
}

// Suspend leaves service exactly as it is (no rollout, repair, chaos or prune) until
// Resume. Suspending a suspended service changes nothing.
func (r *Reconciler) Suspend(ctx context.Context, service, reason string) error {
	if err := validService(service); err != nil {
		return fmt.Errorf("suspend: %w", err)
	}
	if len(reason) > maxSuspendReason || strings.IndexFunc(reason, func(c rune) bool { return !unicode.IsPrint(c) }) >= 0 {
		return fmt.Errorf("suspend %s: reason: want at most %d printable bytes", service, maxSuspendReason)
	}
	cur, err := r.suspensions(ctx)
	if err != nil {
		return fmt.Errorf("suspend %s: %w", service, err)
	}
	if _, ok := cur[service]; ok {
		return nil
	}
	s := Suspended{Reason: r.redactReason(reason), At: r.cfg.Now().UTC()}
	if r.cfg.Failures == nil {
		r.mu.Lock()
		r.suspended[service] = s
		r.mu.Unlock()
	} else {
		raw, err := json.Marshal(s)
		if err != nil {
			return fmt.Errorf("suspend %s: %w", service, err)
		}
		if err := r.cfg.Failures.KVPut(ctx, r.suspendedPrefix()+service, raw); err != nil {
			return fmt.Errorf("suspend %s: %w", service, err)
		}
	}
	r.log.Info("service suspended: no rollout, repair, chaos or prune until resumed", "service", service, "reason", s.Reason)
	r.emit(ctx, Event{Kind: EventSuspended, Service: service, Reason: s.Reason})
	return nil
}

// Resume lets passes act on service again. Resuming a service that is not suspended
// changes nothing.
func (r *Reconciler) Resume(ctx context.Context, service string) error {
	if err := validService(service); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	cur, err := r.suspensions(ctx)
	if err != nil {
		return fmt.Errorf("resume %s: %w", service, err)
	}
	if _, ok := cur[service]; !ok {
		return nil
	}
	if r.cfg.Failures == nil {
		r.mu.Lock()
		delete(r.suspended, service)
		r.mu.Unlock()
	} else if err := r.cfg.Failures.KVDelete(ctx, r.suspendedPrefix()+service); err != nil {
		return fmt.Errorf("resume %s: %w", service, err)
	}
	r.log.Info("service resumed", "service", service)
	r.emit(ctx, Event{Kind: EventResumed, Service: service})
	return nil
}

// Retry releases service's held (failed) revision, so the next pass tries it again:
// what an operator did by deleting the record in Consul by hand.
func (r *Reconciler) Retry(ctx context.Context, service string) error {
	if err := validService(service); err != nil {
		return fmt.Errorf("retry: %w", err)
	}
	failed, err := r.failures(ctx)
	if err != nil {
		return fmt.Errorf("retry %s: %w", service, err)
	}
	f, ok := failed[service]
	if !ok {
		return fmt.Errorf("retry %s: %w", service, ErrNotHeld)
	}
	if r.cfg.Failures != nil {
		if err := r.cfg.Failures.KVDelete(ctx, r.failuresPrefix()+service); err != nil {
			return fmt.Errorf("retry %s: %w", service, err)
		}
	}
	r.mu.Lock()
	delete(r.failed, service)
	r.mu.Unlock()
	r.log.Info("held revision released; the next pass tries it again", "service", service, "revision", shortRev(f.Revision))
	r.emit(ctx, Event{Kind: EventRevisionReleased, Service: service, Revision: f.Revision, Reason: "released by an operator; it had failed: " + f.Reason})
	return nil
}
