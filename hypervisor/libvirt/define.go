package libvirt

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/drover-dev/drover/internal/backoff"
)

// maxDefineAttempts bounds the retries of a define that failed only because libvirtd
// could not load its own schema.
const maxDefineAttempts = 5

// define defines a domain from xml, validated against libvirt's schema so that a
// definition libvirt would silently alter is refused instead.
//
// libvirt 9.0 loads the RelaxNG schema for each validation, and libxml2 is not safe
// doing that twice at once: two concurrent validated defines can fail with "Unable to
// parse RNG …/domain.rng: Error type 'unsignedInt' is not exported". That says nothing
// about the definition, so it must never fail a rollout: this driver's defines take
// turns, and when the error still comes (another client defining at the same instant)
// the define is retried after a short, jittered wait.
func (d *Driver) define(ctx context.Context, conn *libvirt.Connect, xml string) (*libvirt.Domain, error) {
	return defineRetrying(ctx, &d.defineMu, func() (*libvirt.Domain, error) {
		return conn.DomainDefineXMLFlags(xml, libvirt.DOMAIN_DEFINE_VALIDATE)
	}, func(attempt int, err error) {
		d.log.Warn("libvirtd failed to load its domain schema (concurrent validation); defining again", "attempt", attempt, "err", err)
	})
}

// locker is the part of sync.Mutex define needs.
type locker interface {
	Lock()
	Unlock()
}

func defineRetrying(ctx context.Context, mu locker, def func() (*libvirt.Domain, error), retrying func(int, error)) (*libvirt.Domain, error) {
	b := backoff.Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	for attempt := 1; ; attempt++ {
		mu.Lock()
		dom, err := def()
		mu.Unlock()
		if err == nil {
			return dom, nil
		}
		if !isSchemaLoadRace(err) || attempt >= maxDefineAttempts {
			return nil, fmt.Errorf("define domain: %w", err)
		}
		retrying(attempt, err)
		if !b.Wait(ctx) {
			return nil, fmt.Errorf("define domain: %w (after: %w)", ctx.Err(), err)
		}
	}
}

// isSchemaLoadRace recognises libvirtd failing to load domain.rng. libvirt reports it
// as a generic internal error, so its text is the only thing that tells it apart.
func isSchemaLoadRace(err error) bool {
	var verr libvirt.Error
	if !errors.As(err, &verr) {
		return false
	}
	return strings.Contains(verr.Message, "Unable to parse RNG") && strings.Contains(verr.Message, "domain.rng")
}
