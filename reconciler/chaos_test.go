package reconciler

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/drover-dev/drover/sources"
)

// chaosAt is an instant on 2026-03-29 (or the given day offset) in UTC, from "15:04".
func chaosAt(t *testing.T, days int, hhmm string) time.Time {
	t.Helper()
	clock, err := time.Parse("15:04", hhmm)
	if err != nil {
		t.Fatal(err)
	}
	return time.Date(2026, 3, 29+days, clock.Hour(), clock.Minute(), 0, 0, time.UTC)
}

func TestChaosDue(t *testing.T) {
	night := &sources.Window{Start: 2 * time.Hour, End: 4 * time.Hour}
	wrap := &sources.Window{Start: 23 * time.Hour, End: time.Hour}
	every := func(d time.Duration, w *sources.Window) *sources.Chaos { return &sources.Chaos{Interval: d, Window: w} }
	tests := []struct {
		name      string
		now, last time.Time
		chaos     *sources.Chaos
		want      bool
	}{
		{"no chaos block", chaosAt(t, 0, "12:00"), time.Time{}, nil, false},
		{"zero interval is never due", chaosAt(t, 0, "12:00"), time.Time{}, every(0, nil), false},
		{"interval not elapsed", chaosAt(t, 0, "12:09"), chaosAt(t, 0, "12:00"), every(10*time.Minute, nil), false},
		{"interval elapsed exactly", chaosAt(t, 0, "12:10"), chaosAt(t, 0, "12:00"), every(10*time.Minute, nil), true},
		{"interval long elapsed", chaosAt(t, 3, "12:10"), chaosAt(t, 0, "12:00"), every(10*time.Minute, nil), true},
		{"clock behind the last burn", chaosAt(t, 0, "11:00"), chaosAt(t, 0, "12:00"), every(10*time.Minute, nil), false},
		{"elapsed, before the window", chaosAt(t, 0, "01:59"), chaosAt(t, -1, "03:00"), every(time.Hour, night), false},
		{"elapsed, window opens", chaosAt(t, 0, "02:00"), chaosAt(t, -1, "03:00"), every(time.Hour, night), true},
		{"elapsed, inside the window", chaosAt(t, 0, "03:59"), chaosAt(t, -1, "03:00"), every(time.Hour, night), true},
		{"elapsed, window closed", chaosAt(t, 0, "04:00"), chaosAt(t, -1, "03:00"), every(time.Hour, night), false},
		{"inside the window, interval not elapsed", chaosAt(t, 0, "03:30"), chaosAt(t, 0, "02:45"), every(time.Hour, night), false},
		{"wrapping window, after midnight", chaosAt(t, 0, "00:30"), chaosAt(t, -1, "12:00"), every(time.Hour, wrap), true},
		{"wrapping window, before midnight", chaosAt(t, 0, "23:30"), chaosAt(t, 0, "12:00"), every(time.Hour, wrap), true},
		{"wrapping window, closed", chaosAt(t, 0, "12:00"), chaosAt(t, -1, "12:00"), every(time.Hour, wrap), false},
		{"never burnt, no window: due at once", chaosAt(t, 0, "12:00"), time.Time{}, every(24*time.Hour, nil), true},
		{"never burnt, inside the window", chaosAt(t, 0, "02:30"), time.Time{}, every(24*time.Hour, night), true},
		{"never burnt, outside the window", chaosAt(t, 0, "05:00"), time.Time{}, every(24*time.Hour, night), false},
		{"started 5m ago, interval 10m", chaosAt(t, 0, "12:05"), chaosAt(t, 0, "12:00"), every(10*time.Minute, nil), false},
		{"other time zone, converted to UTC", chaosAt(t, 0, "02:30").In(time.FixedZone("EST", -5*60*60)), chaosAt(t, -1, "02:30"), every(time.Hour, night), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := chaosDue(tt.now, tt.last, tt.chaos); got != tt.want {
				t.Errorf("chaosDue(now %s, last %s, %+v) = %v, want %v", tt.now, tt.last, tt.chaos, got, tt.want)
			}
		})
	}
}

func TestPickVictim(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	if got := pickVictim(nil, rnd); got != "" {
		t.Errorf("pickVictim(nil) = %q, want \"\"", got)
	}
	if got := pickVictim([]string{"web-1"}, rnd); got != "web-1" {
		t.Errorf("pickVictim([web-1]) = %q, want web-1", got)
	}

	// Same seed, same set in another order: same victim. The caller's slice is untouched.
	a := []string{"web-c", "web-a", "web-b", "web-d"}
	b := []string{"web-d", "web-b", "web-a", "web-c"}
	for seed := range uint64(20) {
		va := pickVictim(a, rand.New(rand.NewPCG(seed, 0)))
		vb := pickVictim(b, rand.New(rand.NewPCG(seed, 0)))
		if va != vb {
			t.Errorf("seed %d: picked %s from %v but %s from %v", seed, va, a, vb, b)
		}
	}
	if want := []string{"web-c", "web-a", "web-b", "web-d"}; !slices.Equal(a, want) {
		t.Errorf("candidates changed to %v, want %v", a, want)
	}

	// Uniform: with a fixed seed the counts are deterministic; each of n candidates gets
	// within 5% of draws/n, far tighter than any bias would allow.
	candidates := []string{"web-1", "web-2", "web-3", "web-4", "web-5"}
	const draws = 50000
	counts := map[string]int{}
	for range draws {
		counts[pickVictim(candidates, rnd)]++
	}
	expected := draws / len(candidates)
	for _, c := range candidates {
		if got := counts[c]; got < expected*95/100 || got > expected*105/100 {
			t.Errorf("%s picked %d times in %d draws, want %d ± 5%%", c, got, draws, expected)
		}
	}
	if len(counts) != len(candidates) {
		t.Errorf("picked %v, want only and all of %v", counts, candidates)
	}
}
