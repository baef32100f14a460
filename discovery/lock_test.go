package discovery

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/drover-dev/drover/testenv"
)

// takeoverBudget is the promise: a standby leads within this long of the leader dying.
const takeoverBudget = 15 * time.Second

const testKey = "drover/leader/test"

func secondClient(t *testing.T, agent *testenv.ConsulAgent) *Client {
	t.Helper()
	c, err := New(Config{Address: agent.Addr}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func lead(t *testing.T, c *Client, holder string, timeout time.Duration) *Leadership {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	l, err := c.Lead(ctx, testKey, LeaderOptions{Holder: holder})
	if err != nil {
		t.Fatalf("Lead as %s: %v", holder, err)
	}
	t.Cleanup(func() { release(t, l) })
	return l
}

func release(t *testing.T, l *Leadership) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Release(ctx); err != nil {
		t.Errorf("Release %s: %v", l.Session(), err)
	}
}

// standby is a Lead running in the background, as a second Drover waiting its turn.
type standby struct {
	standing chan Holder // receives the holder seen when the wait starts
	result   chan leadResult
	cancel   context.CancelFunc
}

type leadResult struct {
	l   *Leadership
	err error
	at  time.Time
}

func startStandby(t *testing.T, c *Client, holder string) *standby {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &standby{standing: make(chan Holder, 1), result: make(chan leadResult, 1), cancel: cancel}
	go func() {
		l, err := c.Lead(ctx, testKey, LeaderOptions{Holder: holder, OnStandby: func(h Holder) { s.standing <- h }})
		s.result <- leadResult{l, err, time.Now()}
	}()
	t.Cleanup(func() {
		cancel()
		if r := <-s.result; r.l != nil {
			release(t, r.l)
		}
	})
	return s
}

// waitStanding returns the holder the standby saw, once it is waiting.
func (s *standby) waitStanding(t *testing.T) Holder {
	t.Helper()
	select {
	case h := <-s.standing:
		return h
	case r := <-s.result:
		s.result <- r // for cleanup
		t.Fatalf("standby returned instead of waiting: leadership %v, err %v", r.l != nil, r.err)
	case <-time.After(30 * time.Second):
		t.Fatal("standby did not start waiting within 30s")
	}
	return Holder{}
}

// waitLeads waits for the standby to hold the lock within timeout.
func (s *standby) waitLeads(t *testing.T, timeout time.Duration) leadResult {
	t.Helper()
	select {
	case r := <-s.result:
		s.result <- r
		if r.err != nil {
			t.Fatalf("standby Lead: %v", r.err)
		}
		return r
	case <-time.After(timeout):
		t.Fatalf("standby did not lead within %s", timeout)
	}
	return leadResult{}
}

func holderOf(t *testing.T, c *Client) string {
	t.Helper()
	pair, _, err := c.api.KV().Get(testKey, nil)
	if err != nil {
		t.Fatalf("read %s: %v", testKey, err)
	}
	if pair == nil {
		return ""
	}
	return pair.Session
}

func waitClosed(t *testing.T, ch <-chan struct{}, timeout time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(timeout):
		t.Fatalf("%s: not within %s", what, timeout)
	}
}

func TestLeadOnlyOneHolds(t *testing.T) {
	t.Parallel()
	c1, agent := newTestClient(t)
	c2 := secondClient(t, agent)
	a := lead(t, c1, "a", 30*time.Second)
	if got := holderOf(t, c1); got != a.Session() {
		t.Fatalf("lock holder: want session %s, got %q", a.Session(), got)
	}

	b := startStandby(t, c2, "b")
	h := b.waitStanding(t)
	if want := (Holder{Session: a.Session(), Value: "a"}); h != want {
		t.Errorf("standby saw holder: want %+v, got %+v", want, h)
	}
	// Long enough for a Lead that should not succeed to have done so: several of
	// the standby's blocking reads.
	select {
	case r := <-b.result:
		b.result <- r
		t.Fatalf("second contender returned while the first holds: leadership %v, err %v", r.l != nil, r.err)
	case <-a.Lost():
		t.Fatal("holder lost the lock while a standby waited")
	case <-time.After(3 * lockWait):
	}
	b.cancel()
	r := <-b.result
	b.result <- r
	if r.l != nil || !errors.Is(r.err, context.Canceled) {
		t.Errorf("cancelled standby: want context.Canceled and no leadership, got leadership %v, err %v", r.l != nil, r.err)
	}
	if got := holderOf(t, c1); got != a.Session() {
		t.Errorf("after the standby gave up: want holder %s, got %q", a.Session(), got)
	}
}

func TestLeadReleaseHandsOver(t *testing.T) {
	t.Parallel()
	c1, agent := newTestClient(t)
	c2 := secondClient(t, agent)
	a := lead(t, c1, "a", 30*time.Second)
	b := startStandby(t, c2, "b")
	b.waitStanding(t)

	released := time.Now()
	release(t, a)
	waitClosed(t, a.Lost(), time.Second, "Lost after Release")
	// A release needs no lock-delay: the standby's blocking read wakes at once.
	r := b.waitLeads(t, 5*time.Second)
	t.Logf("hand-over after release: %s", r.at.Sub(released).Round(time.Millisecond))
	if got := holderOf(t, c1); got != r.l.Session() {
		t.Errorf("lock holder: want %s, got %q", r.l.Session(), got)
	}
	select {
	case <-r.l.Lost():
		t.Error("new holder's Lost is closed")
	default:
	}
}

func TestLeadSessionDestroyed(t *testing.T) {
	t.Parallel()
	c1, agent := newTestClient(t)
	c2 := secondClient(t, agent)
	a := lead(t, c1, "a", 30*time.Second)
	b := startStandby(t, c2, "b")
	b.waitStanding(t)

	destroyed := time.Now()
	if _, err := c2.api.Session().Destroy(a.Session(), nil); err != nil {
		t.Fatalf("destroy the holder's session: %v", err)
	}
	waitClosed(t, a.Lost(), 5*time.Second, "Lost after the session was destroyed")
	r := b.waitLeads(t, takeoverBudget)
	t.Logf("takeover after session destroy: %s", r.at.Sub(destroyed).Round(time.Millisecond))
}

// TestLeadTakeoverWhenHolderDies stops the holder's heartbeat without a word to
// Consul, as kill -9 would: the standby must lead within the budget.
func TestLeadTakeoverWhenHolderDies(t *testing.T) {
	t.Parallel()
	c1, agent := newTestClient(t)
	c2 := secondClient(t, agent)
	a := lead(t, c1, "a", 30*time.Second)
	b := startStandby(t, c2, "b")
	b.waitStanding(t)

	died := time.Now()
	a.k.stopHeartbeat()
	r := b.waitLeads(t, takeoverBudget)
	took := r.at.Sub(died)
	t.Logf("takeover after the holder died: %s (budget %s)", took.Round(time.Millisecond), takeoverBudget)
	// The old holder learns it lost the lock (its session is gone).
	waitClosed(t, a.Lost(), 5*time.Second, "dead holder's Lost")
	if took < defaultCheckTTL-defaultCheckTTL/4 {
		t.Errorf("took over after %s: sooner than the heartbeat TTL allows, the holder was still entitled", took)
	}
}

// TestLeadLostWhenConsulGoes stops the agent under a leader: Lost must fire within
// about the check TTL, before anyone else could be handed the lock.
func TestLeadLostWhenConsulGoes(t *testing.T) {
	t.Parallel()
	agent := testenv.Consul(t)
	c := secondClient(t, agent)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := c.Lead(ctx, testKey, LeaderOptions{Holder: "a"})
	if err != nil {
		t.Fatalf("Lead: %v", err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := l.Release(rctx); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Release with the agent gone: want ErrUnavailable, got %v", err)
		}
	}()
	if err := agent.Stop(); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, l.Lost(), defaultCheckTTL+2*time.Second, "Lost after the agent stopped")
}

func TestLeadUnavailable(t *testing.T) {
	t.Parallel()
	c, err := New(Config{Address: "127.0.0.1:1"}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := c.Lead(ctx, testKey, LeaderOptions{})
	if l != nil || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Lead against a closed port: want ErrUnavailable, got leadership %v, err %v", l != nil, err)
	}
}

func TestLeadRejectsBadInput(t *testing.T) {
	c, err := New(Config{Address: "127.0.0.1:1"}, testLogger(t)) // never contacted
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		key     string
		opts    LeaderOptions
		wantErr string
	}{
		{"empty key", "", LeaderOptions{}, "empty key"},
		{"leading slash", "/drover/leader/x", LeaderOptions{}, "must not start or end with /"},
		{"trailing slash", "drover/leader/", LeaderOptions{}, "must not start or end with /"},
		{"short ttl", testKey, LeaderOptions{CheckTTL: 100 * time.Millisecond}, "check TTL 100ms: want at least 1s"},
		{"negative ttl", testKey, LeaderOptions{CheckTTL: -time.Second}, "check TTL -1s"},
		{"negative delay", testKey, LeaderOptions{LockDelay: -time.Second}, "lock delay -1s: want 0 to 1m0s"},
		{"long delay", testKey, LeaderOptions{LockDelay: 2 * time.Minute}, "lock delay 2m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := c.Lead(context.Background(), tt.key, tt.opts)
			if l != nil || err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("want error containing %q, got leadership %v, err %v", tt.wantErr, l != nil, err)
			}
			if errors.Is(err, ErrUnavailable) {
				t.Errorf("bad input must fail before contacting Consul, got %v", err)
			}
		})
	}
}

// TestLeadKeyInUse: a key that holds something other than a lock is not taken over.
func TestLeadKeyInUse(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	if _, err := c.api.KV().Put(&api.KVPair{Key: testKey, Value: []byte("not a lock")}, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := c.Lead(ctx, testKey, LeaderOptions{})
	if l != nil || !errors.Is(err, api.ErrLockConflict) {
		t.Fatalf("Lead on a plain key: want %v, got leadership %v, err %v", api.ErrLockConflict, l != nil, err)
	}
	pair, _, err := c.api.KV().Get(testKey, nil)
	if err != nil || pair == nil || string(pair.Value) != "not a lock" {
		t.Errorf("plain key after Lead: want it untouched, got %+v (err %v)", pair, err)
	}
}
