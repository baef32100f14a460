package backoff

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

func TestNextGrowsWithinBoundsAndResets(t *testing.T) {
	b := &Backoff{Min: time.Second, Max: 8 * time.Second, Rand: rand.New(rand.NewPCG(1, 2))}
	nominal := []time.Duration{1, 2, 4, 8, 8, 8}
	for i, n := range nominal {
		n *= time.Second
		got := b.Next()
		if got < n/2 || got > n {
			t.Errorf("attempt %d: got %s, want within [%s, %s]", i+1, got, n/2, n)
		}
	}
	if b.Attempts() != len(nominal) {
		t.Errorf("Attempts() = %d, want %d", b.Attempts(), len(nominal))
	}
	b.Reset()
	if got := b.Next(); got > time.Second {
		t.Errorf("after Reset: got %s, want at most 1s", got)
	}
}

func TestJitterSpreadsDelays(t *testing.T) {
	seen := map[time.Duration]bool{}
	for i := range 20 {
		b := &Backoff{Min: time.Second, Max: time.Minute, Rand: rand.New(rand.NewPCG(uint64(i), 7))}
		seen[b.Next()] = true
	}
	if len(seen) < 10 {
		t.Errorf("20 loops failing together drew only %d distinct first delays; want jitter", len(seen))
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep with a cancelled context reported a full delay")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Error("Sleep(1ms) did not report a full delay")
	}
}
