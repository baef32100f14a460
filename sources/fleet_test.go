package sources

import (
	"testing"
	"time"
)

func TestWindowContains(t *testing.T) {
	day := func(hhmm string) time.Time {
		t.Helper()
		at, err := time.Parse("2006-01-02 15:04:05", "2026-03-29 "+hhmm)
		if err != nil {
			t.Fatal(err)
		}
		return at
	}
	night := &Window{Start: 2 * time.Hour, End: 4 * time.Hour}
	wrap := &Window{Start: 22*time.Hour + 30*time.Minute, End: 1 * time.Hour}
	paris := time.FixedZone("CEST", 2*60*60)
	tests := []struct {
		name string
		w    *Window
		at   time.Time
		want bool
	}{
		{"nil window is always open", nil, day("13:37:00"), true},
		{"before start", night, day("01:59:59"), false},
		{"at start", night, day("02:00:00"), true},
		{"inside", night, day("03:30:00"), true},
		{"just before end", night, day("03:59:59"), true},
		{"at end is outside", night, day("04:00:00"), false},
		{"midnight outside", night, day("00:00:00"), false},
		{"wrapping: before start", wrap, day("22:29:59"), false},
		{"wrapping: at start", wrap, day("22:30:00"), true},
		{"wrapping: before midnight", wrap, day("23:59:59"), true},
		{"wrapping: midnight", wrap, day("00:00:00"), true},
		{"wrapping: after midnight", wrap, day("00:59:59"), true},
		{"wrapping: at end", wrap, day("01:00:00"), false},
		{"wrapping: midday", wrap, day("12:00:00"), false},
		// 05:00 in UTC+2 is 03:00 UTC: the window is in UTC whatever the zone of t.
		{"other zone converted to UTC", night, time.Date(2026, 3, 29, 5, 0, 0, 0, paris), true},
		{"other zone: local 03:00 is 01:00 UTC", night, time.Date(2026, 3, 29, 3, 0, 0, 0, paris), false},
		{"nanoseconds before end", night, day("04:00:00").Add(-time.Nanosecond), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.w.Contains(tt.at); got != tt.want {
				t.Errorf("%v.Contains(%s) = %v, want %v", tt.w, tt.at.Format(time.RFC3339Nano), got, tt.want)
			}
		})
	}
}

func TestWindowString(t *testing.T) {
	tests := []struct {
		w    *Window
		want string
	}{
		{nil, "any time"},
		{&Window{Start: 2 * time.Hour, End: 4 * time.Hour}, "02:00-04:00"},
		{&Window{Start: 23*time.Hour + 45*time.Minute, End: 5 * time.Minute}, "23:45-00:05"},
	}
	for _, tt := range tests {
		if got := tt.w.String(); got != tt.want {
			t.Errorf("Window%+v.String() = %q, want %q", tt.w, got, tt.want)
		}
	}
}

// What parsing accepts, String gives back: the form in messages is the form to write.
func TestWindowRoundTrip(t *testing.T) {
	for _, text := range []string{"02:00-04:00", "23:59-00:00", "00:00-23:59", "12:34-01:02"} {
		f, err := Parse("f.yaml", []byte(svc(`chaos: {interval: 1m, window: "`+text+`"}`)))
		if err != nil {
			t.Fatalf("Parse window %s: %v", text, err)
		}
		if got := f.Services[0].Chaos.Window.String(); got != text {
			t.Errorf("window %s parsed and printed as %s", text, got)
		}
	}
}
