// Package backoff is Drover's one retry delay: exponential, capped, with full jitter so
// several Drovers (or several loops in one) that failed together do not retry together.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff yields growing delays: the n-th consecutive failure waits a random duration
// in [Min·2ⁿ⁻¹/2, Min·2ⁿ⁻¹], capped at Max. Reset after a success. The zero value is
// not usable: set Min and Max. Not safe for concurrent use; each loop owns one.
type Backoff struct {
	Min, Max time.Duration
	// Rand, optional, makes the jitter reproducible in tests.
	Rand *rand.Rand

	attempt int
}

// Next returns the delay before the next attempt and counts a failure.
func (b *Backoff) Next() time.Duration {
	d := b.Min
	for i := 0; i < b.attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	b.attempt++
	// Half fixed, half random: never less than half the nominal delay, so a loop
	// still slows down, and never two loops in step.
	half := int64(d / 2)
	if half <= 0 {
		return d
	}
	var r int64
	if b.Rand != nil {
		r = b.Rand.Int64N(half + 1)
	} else {
		r = rand.Int64N(half + 1)
	}
	return time.Duration(half + r)
}

// Reset starts again from Min after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Attempts is how many failures were counted since the last Reset.
func (b *Backoff) Attempts() int { return b.attempt }

// Wait sleeps for Next() or until ctx ends; it reports whether the full delay passed.
func (b *Backoff) Wait(ctx context.Context) bool {
	return Sleep(ctx, b.Next())
}

// Sleep waits d or until ctx ends; it reports whether the full d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
