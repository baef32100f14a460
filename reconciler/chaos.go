package reconciler

import (
	"math/rand/v2"
	"slices"
	"time"

	"github.com/drover-dev/drover/sources"
)

// Burn-and-rebuild decisions, kept pure so the clock and the random source stay the
// caller's. The pass decides whether to act (every replica passing, nothing else in
// flight) and retires the victim through the normal drain path; the next pass replaces
// it like any missing replica.

// chaosDue reports whether a service with chaos block c should lose an instance at now,
// its last burn having been at last: at least Interval has passed and now is inside the
// window. A nil block is never due.
//
// A zero last counts as a burn at the beginning of time: the service is due at the
// first instant inside the window. Callers that keep no record of burns across restarts
// should pass the instant they started watching the service instead of zero, so that
// the first burn comes at the first window opportunity at least Interval after start,
// and a Drover that restarts often does not burn an instance on every start.
func chaosDue(now, last time.Time, c *sources.Chaos) bool {
	if c == nil || c.Interval <= 0 {
		return false
	}
	if !last.IsZero() && now.Sub(last) < c.Interval {
		return false
	}
	return c.Window.Contains(now)
}

// chaosNext is the earliest instant from now on at which chaosDue holds, so a runner can
// schedule a pass then instead of polling; the zero time when c is nil. The answer is
// exact to the minute boundaries of the window.
func chaosNext(now, last time.Time, c *sources.Chaos) time.Time {
	if c == nil || c.Interval <= 0 {
		return time.Time{}
	}
	t := now
	if !last.IsZero() && last.Add(c.Interval).After(t) {
		t = last.Add(c.Interval)
	}
	if c.Window.Contains(t) {
		return t
	}
	u := t.UTC()
	open := time.Date(u.Year(), u.Month(), u.Day(), 0, 0, 0, 0, time.UTC).Add(c.Window.Start)
	if !open.After(u) {
		open = open.Add(24 * time.Hour)
	}
	return open.In(now.Location())
}

// pickVictim chooses uniformly among candidates, the instance names eligible to burn; ""
// when there are none. The candidates are sorted first, so a seeded source picks the
// same victim from the same set whatever order the caller listed it in.
func pickVictim(candidates []string, rnd *rand.Rand) string {
	if len(candidates) == 0 {
		return ""
	}
	sorted := slices.Clone(candidates)
	slices.Sort(sorted)
	return sorted[rnd.IntN(len(sorted))]
}
