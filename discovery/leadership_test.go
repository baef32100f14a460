package discovery

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/drover-dev/drover/testenv"
)

// guardCancelledAt waits for a Guard context to be cancelled and reports when it saw
// it, after the fact: the recorded time is never earlier than the cancellation.
func guardCancelledAt(gctx context.Context) <-chan time.Time {
	at := make(chan time.Time, 1)
	go func() {
		<-gctx.Done()
		at <- time.Now()
	}()
	return at
}

func TestGuardOnFreshLeadership(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	l := lead(t, c, "a", 30*time.Second)
	gctx, done, err := l.Guard(context.Background())
	if err != nil {
		t.Fatalf("Guard on a fresh leadership: %v", err)
	}
	defer done()
	if gctx.Err() != nil {
		t.Errorf("fresh Guard context is done: %v", context.Cause(gctx))
	}
	// The lease runs CheckTTL from the last acknowledged heartbeat's send time.
	if v := time.Until(l.ValidUntil()); v <= 0 || v > defaultCheckTTL {
		t.Errorf("ValidUntil is %s from now: want within (0, %s]", v, defaultCheckTTL)
	}
	// The step's own cancel ends only that step.
	done()
	if !errors.Is(gctx.Err(), context.Canceled) || errors.Is(context.Cause(gctx), ErrNotLeader) {
		t.Errorf("after its CancelFunc: want Canceled without ErrNotLeader, got %v, cause %v", gctx.Err(), context.Cause(gctx))
	}
	if _, done2, err := l.Guard(context.Background()); err != nil {
		t.Errorf("Guard after an earlier step ended: %v", err)
	} else {
		done2()
	}
}

func TestGuardAfterRelease(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	l := lead(t, c, "a", 30*time.Second)
	gctx, done, err := l.Guard(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	release(t, l)
	if gctx.Err() == nil {
		t.Fatal("Guard context still live after Release returned")
	}
	if cause := context.Cause(gctx); !errors.Is(cause, ErrNotLeader) {
		t.Errorf("Guard context's cause after Release: want ErrNotLeader, got %v", cause)
	}
	if _, _, err := l.Guard(context.Background()); !errors.Is(err, ErrNotLeader) {
		t.Errorf("Guard after Release: want ErrNotLeader, got %v", err)
	}
	if v := l.ValidUntil(); v.After(time.Now()) {
		t.Errorf("ValidUntil after Release: %v, want in the past", v)
	}
}

// TestGuardCancelledWhenConsulGoes stops the agent under a leader: no heartbeat is
// acknowledged any more, and the Guard context must be cancelled by the lease's end
// at the latest, with ErrNotLeader as its cause.
func TestGuardCancelledWhenConsulGoes(t *testing.T) {
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
		_ = l.Release(rctx) // the agent is gone
	}()
	gctx, done, err := l.Guard(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	if err := agent.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-guardCancelledAt(gctx):
		lease := l.k.lease()
		t.Logf("guard cancelled %s before the lease's end", lease.Sub(at).Round(time.Millisecond))
		// The earliest a standby could lead is the lease's end plus the lock-delay.
		if earliest := lease.Add(defaultLockDelay); !at.Before(earliest) {
			t.Errorf("guard cancelled at %s, not before %s, when a standby could lead",
				at.Format(time.StampMicro), earliest.Format(time.StampMicro))
		}
	case <-time.After(defaultCheckTTL + 5*time.Second):
		t.Fatalf("Guard context not cancelled within the check TTL (%s) of the agent stopping", defaultCheckTTL)
	}
	if cause := context.Cause(gctx); !errors.Is(cause, ErrNotLeader) {
		t.Errorf("cause: want ErrNotLeader, got %v", cause)
	}
	if _, _, err := l.Guard(context.Background()); !errors.Is(err, ErrNotLeader) {
		t.Errorf("Guard after the lease ended: want ErrNotLeader, got %v", err)
	}
	waitClosed(t, l.Lost(), time.Second, "Lost after the lease ended")
}

// TestGuardLapsesWhenLeaseEndsUnseen: a lease that ended while nothing ran (a stopped
// process resumed) is found over by Guard and by the guarded context's Err itself,
// before any goroutine had the chance to notice; and a heartbeat acknowledged after
// the lease ended does not revive it.
func TestGuardLapsesWhenLeaseEndsUnseen(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	l := lead(t, c, "a", 30*time.Second)
	gctx, done, err := l.Guard(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	// What a stop and resume look like from inside: the lease is in the past and
	// no goroutine has run since.
	l.k.leaseMu.Lock()
	l.k.leaseEnd = time.Now().Add(-time.Millisecond)
	l.k.leaseMu.Unlock()
	if err := gctx.Err(); !errors.Is(context.Cause(gctx), ErrNotLeader) {
		t.Errorf("guarded Err after the lease ended: got %v, cause %v; want cancelled with ErrNotLeader", err, context.Cause(gctx))
	}
	if _, _, err := l.Guard(context.Background()); !errors.Is(err, ErrNotLeader) {
		t.Errorf("Guard after the lease ended: want ErrNotLeader, got %v", err)
	}
	if l.k.extend(time.Now()) {
		t.Error("a heartbeat sent after the lease ended extended it")
	}
}

// frozenProxy forwards TCP to target until frozen; then it passes nothing on, in
// either direction, and holds new connections unanswered: the leader's link to its
// agent hangs, as under a network partition or a stopped agent host.
type frozenProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	frozen chan struct{} // closed when frozen
	conns  []net.Conn
}

func newFrozenProxy(t *testing.T, target string) *frozenProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &frozenProxy{ln: ln, target: target, frozen: make(chan struct{})}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	return p
}

func (p *frozenProxy) addr() string { return p.ln.Addr().String() }

func (p *frozenProxy) freeze() { close(p.frozen) }

func (p *frozenProxy) track(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns = append(p.conns, c)
}

func (p *frozenProxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.track(in)
		select {
		case <-p.frozen:
			continue // held, unanswered
		default:
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.track(out)
		go p.pipe(out, in)
		go p.pipe(in, out)
	}
}

// pipe copies until frozen: bytes read after the freeze are dropped on the floor.
func (p *frozenProxy) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-p.frozen:
			return
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestGuardFencesBeforeStandbyLeads cuts a leader off from its agent (its connection
// hangs) while a standby waits: the leader's Guard contexts must be cancelled, and
// its lease over, before the standby holds the lock. Ordering of real events, not a
// timing budget.
func TestGuardFencesBeforeStandbyLeads(t *testing.T) {
	t.Parallel()
	cb, agent := newTestClient(t)
	proxy := newFrozenProxy(t, agent.Addr)
	ca, err := New(Config{Address: proxy.addr(), CallTimeout: 2 * time.Second}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := ca.Lead(ctx, testKey, LeaderOptions{Holder: "a"})
	if err != nil {
		t.Fatalf("Lead as a: %v", err)
	}
	b := startStandby(t, cb, "b")
	b.waitStanding(t)

	// Steps under way when the link hangs, and one started later.
	first, doneFirst, err := a.Guard(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer doneFirst()
	firstAt := guardCancelledAt(first)
	proxy.freeze()
	second, doneSecond, err := a.Guard(context.Background())
	if err != nil {
		t.Fatalf("Guard right after the freeze, within the lease: %v", err)
	}
	defer doneSecond()
	secondAt := guardCancelledAt(second)

	r := b.waitLeads(t, takeoverBudget+defaultCheckTTL)
	lease := a.k.lease()
	for name, ch := range map[string]<-chan time.Time{"first": firstAt, "second": secondAt} {
		select {
		case at := <-ch:
			if !at.Before(r.at) {
				t.Errorf("%s Guard context cancelled at %s, after the standby led at %s",
					name, at.Format(time.StampMicro), r.at.Format(time.StampMicro))
			}
			t.Logf("%s Guard cancelled %s before the standby led", name, r.at.Sub(at).Round(time.Millisecond))
		default:
			t.Errorf("%s Guard context still live when the standby leads", name)
		}
		if cause := context.Cause(map[string]context.Context{"first": first, "second": second}[name]); !errors.Is(cause, ErrNotLeader) {
			t.Errorf("%s Guard cause: want ErrNotLeader, got %v", name, cause)
		}
	}
	if !lease.Before(r.at) {
		t.Errorf("standby led at %s, before the old leader's lease ended at %s",
			r.at.Format(time.StampMicro), lease.Format(time.StampMicro))
	}
	t.Logf("old lease ended %s before the standby led", r.at.Sub(lease).Round(time.Millisecond))
	if _, _, err := a.Guard(context.Background()); !errors.Is(err, ErrNotLeader) {
		t.Errorf("old leader's Guard: want ErrNotLeader, got %v", err)
	}
	// The old leader cannot clean up through the frozen link; its heartbeat service
	// would linger, so remove it directly for the cleanliness check.
	rctx, rcancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer rcancel()
	_ = a.Release(rctx)
	if err := cb.Deregister(context.Background(), a.k.serviceID); err != nil {
		t.Errorf("remove the old leader's heartbeat: %v", err)
	}
}
