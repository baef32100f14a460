package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/testenv"
)

func leaderTestLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(leaderTWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type leaderTWriter struct{ t *testing.T }

func (w leaderTWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestLeaderLosesAndWaitsAgain: when the leader's session is destroyed behind its
// back, the work is cancelled and the leader competes for the lock again instead of
// going on.
func TestLeaderLosesAndWaitsAgain(t *testing.T) {
	consul := testenv.Consul(t)
	c, err := discovery.New(discovery.Config{Address: consul.Addr}, leaderTestLog(t))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := api.NewClient(&api.Config{Address: consul.Addr})
	if err != nil {
		t.Fatal(err)
	}
	const fleet = "test"
	key := LeaderKey(fleet)
	finished := errors.New("second term done")
	calls := 0
	var l *Leader
	work := func(ctx context.Context) error {
		calls++
		if !l.Leading() {
			return errors.New("work runs while Leading() says false")
		}
		if calls > 1 {
			return finished
		}
		pair, _, err := cl.KV().Get(key, nil)
		if err != nil || pair == nil || pair.Session == "" {
			return fmt.Errorf("first term: lock not held: %+v, %v", pair, err)
		}
		if _, err := cl.Session().Destroy(pair.Session, nil); err != nil {
			return fmt.Errorf("destroy session: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(30 * time.Second):
			return errors.New("first term not cancelled within 30s of losing the lock")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rec := consulReconciler(t, newFakeWorld(), c, 100)
	live, stop := rec.Subscribe()
	defer stop()
	l = &Leader{Elector: c, Fleet: fleet, Log: leaderTestLog(t), Reconciler: rec}
	if err := l.Run(ctx, work); !errors.Is(err, finished) {
		t.Fatalf("Leader.Run: want %v, got %v", finished, err)
	}
	if l.Leading() {
		t.Error("Leading() after Run returned")
	}
	// The lapsed term's leader_lost is live only: its lease could not fence the write.
	if got, want := kinds(drain(live)), []EventKind{EventLeaderAcquired, EventLeaderLost, EventLeaderAcquired, EventLeaderLost}; !slices.Equal(got, want) {
		t.Errorf("live leader events %v, want %v", got, want)
	}
	if got, want := kinds(must(rec.History(ctx, "", 0))), []EventKind{EventLeaderAcquired, EventLeaderAcquired, EventLeaderLost}; !slices.Equal(got, want) {
		t.Errorf("stored leader events %v, want %v", got, want)
	}
	if calls != 2 {
		t.Errorf("work ran %d times, want 2 (one per term)", calls)
	}
	// The second term ended on its own: its lock is released.
	pair, _, err := cl.KV().Get(key, nil)
	if err != nil || pair == nil || pair.Session != "" {
		t.Errorf("after Run returned: want the lock free, got %+v (err %v)", pair, err)
	}
}

func TestLeaderConsulDown(t *testing.T) {
	c, err := discovery.New(discovery.Config{Address: "127.0.0.1:1"}, leaderTestLog(t))
	if err != nil {
		t.Fatal(err)
	}
	work := func(context.Context) error { return errors.New("work ran without the lock") }
	t.Run("once fails", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		l := &Leader{Elector: c, Fleet: "x", Once: true, Log: leaderTestLog(t)}
		if err := l.Run(ctx, work); !errors.Is(err, discovery.ErrUnavailable) {
			t.Errorf("Run --once with Consul down: want ErrUnavailable, got %v", err)
		}
	})
	t.Run("daemon retries until stopped", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		l := &Leader{Elector: c, Fleet: "x", Log: leaderTestLog(t)}
		if err := l.Run(ctx, work); err != nil {
			t.Errorf("Run with Consul down until ctx ends: want nil, got %v", err)
		}
	})
}
