package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-dev/drover/reconciler"
)

// fakeView is a View whose fleet a test sets and whose events it publishes.
type fakeView struct {
	mu    sync.Mutex
	st    reconciler.FleetStatus
	stErr error
	hist  []reconciler.Event
	subs  map[int]chan reconciler.Event
	next  int
	seq   uint64
	// beforeHistory, when set, runs at the start of History: a test can make an
	// event happen between a subscription and a history read.
	beforeHistory func()
}

var _ reconciler.View = (*fakeView)(nil)

func newFakeView(st reconciler.FleetStatus) *fakeView {
	return &fakeView{st: st, subs: map[int]chan reconciler.Event{}}
}

func (f *fakeView) FleetStatus(ctx context.Context) (reconciler.FleetStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st, f.stErr
}

func (f *fakeView) History(ctx context.Context, service string, limit int) ([]reconciler.Event, error) {
	f.mu.Lock()
	hook := f.beforeHistory
	f.beforeHistory = nil
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stErr != nil {
		return nil, f.stErr
	}
	var out []reconciler.Event
	for _, e := range f.hist {
		if service == "" || e.Service == service {
			out = append(out, e)
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

func (f *fakeView) Subscribe() (<-chan reconciler.Event, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.next
	f.next++
	ch := make(chan reconciler.Event, 64)
	f.subs[id] = ch
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.subs[id]; ok {
			delete(f.subs, id)
			close(ch)
		}
	}
}

// update changes the fleet under the lock.
func (f *fakeView) update(fn func(st *reconciler.FleetStatus)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.st)
}

// publish stores e (numbered) and hands it to every subscriber, as the reconciler
// would: a full subscriber loses it.
func (f *fakeView) publish(e reconciler.Event) reconciler.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	e.Seq = f.seq
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	e.Fleet = f.st.Fleet
	f.hist = append(f.hist, e)
	for _, ch := range f.subs {
		select {
		case ch <- e:
		default:
		}
	}
	return e
}

func (f *fakeView) subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

// waitSubscribers waits until n subscribers are attached.
func (f *fakeView) waitSubscribers(t testing.TB, n int) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%d subscribers", n), func() bool { return f.subscribers() == n })
}

// fakeControl records orders.
type fakeControl struct {
	mu     sync.Mutex
	orders []string
	err    error
}

var _ reconciler.Control = (*fakeControl)(nil)

func (c *fakeControl) record(s string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.orders = append(c.orders, s)
	return c.err
}

func (c *fakeControl) Suspend(ctx context.Context, service, reason string) error {
	return c.record("suspend " + service + " " + reason)
}
func (c *fakeControl) Resume(ctx context.Context, service string) error {
	return c.record("resume " + service)
}
func (c *fakeControl) Retry(ctx context.Context, service string) error {
	return c.record("retry " + service)
}
func (c *fakeControl) Reconcile(ctx context.Context) error { return c.record("reconcile") }

func (c *fakeControl) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.orders...)
}

// hostile strings as git could carry them.
const (
	hostileVersion = `1.0<script>alert("v")</script>`
	hostileReason  = `health gate: <img src=x onerror="document.title='pwned'"> never passed`
)

var t0 = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

// sampleFleet: web converged, api rolling out 1 of 2, db held, cache suspended.
func sampleFleet() reconciler.FleetStatus {
	vm := func(name, version, health string, age time.Duration) reconciler.VMStatus {
		return reconciler.VMStatus{Name: name, Version: version, Revision: "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
			State: "running", Address: "127.0.0.1:40" + name[len(name)-2:], Created: t0.Add(-age), Health: health}
	}
	return reconciler.FleetStatus{
		Fleet: "demo", Revision: "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678", Ref: "branch:main", Leader: true,
		LastFetch: t0.Add(-3 * time.Second), LastPass: t0.Add(-2 * time.Second),
		Services: []reconciler.ServiceStatus{
			{Name: "web", Version: "1.4.2", Revision: "a1b2c3d4e5f6", Replicas: 2, Phase: "converged",
				Versions: []reconciler.VersionCount{{Version: "1.4.2", Passing: 2, Total: 2}},
				VMs:      []reconciler.VMStatus{vm("web-3f2a91c0-01", "1.4.2", "passing", time.Hour), vm("web-3f2a91c0-02", "1.4.2", "passing", time.Hour)}},
			{Name: "api", Version: "2.0.0", Revision: "a1b2c3d4e5f6", Replicas: 2, Phase: "rolling-out",
				Progress: reconciler.Progress{Passing: 1, Wanted: 2, Started: t0.Add(-20 * time.Second)},
				Versions: []reconciler.VersionCount{{Version: "1.9.0", Passing: 2, Total: 2}, {Version: "2.0.0", Passing: 1, Total: 2}},
				VMs: []reconciler.VMStatus{vm("api-00000000-11", "1.9.0", "passing", 48*time.Hour), vm("api-00000000-12", "1.9.0", "passing", 48*time.Hour),
					vm("api-11111111-13", "2.0.0", "passing", 15*time.Second), vm("api-11111111-14", "2.0.0", "critical", 15*time.Second)}},
			{Name: "db", Version: hostileVersion, Revision: "a1b2c3d4e5f6", Replicas: 1, Phase: "held",
				Held:     &reconciler.Hold{Revision: "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678", Reason: hostileReason, At: t0.Add(-time.Minute)},
				Versions: []reconciler.VersionCount{{Version: "0.9", Passing: 1, Total: 1}},
				VMs:      []reconciler.VMStatus{vm("db-22222222-21", "0.9", "passing", 5*time.Hour)}},
			{Name: "cache", Version: "7", Revision: "a1b2c3d4e5f6", Replicas: 1, Phase: "suspended",
				Suspended: &reconciler.Suspended{Reason: "investigating latency", At: t0.Add(-10 * time.Minute)},
				Versions:  []reconciler.VersionCount{{Version: "7", Passing: 1, Total: 1}},
				VMs:       []reconciler.VMStatus{vm("cache-33333333-31", "7", "passing", 3*time.Hour)}},
		},
	}
}

type fixture struct {
	view *fakeView
	ctl  *fakeControl
	srv  *Server
}

func newFixture(t testing.TB, mod func(*Config)) *fixture {
	t.Helper()
	f := &fixture{view: newFakeView(sampleFleet()), ctl: &fakeControl{}}
	cfg := Config{View: f.view, Control: f.ctl, Listen: "127.0.0.1:7070", Now: func() time.Time { return t0 }}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = s
	return f
}

// do runs one request through the handler, Host 127.0.0.1:7070 unless set.
func (f *fixture) do(method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	var req *http.Request
	if body != "" {
		req = httptest.NewRequest(method, path, strings.NewReader(body))
	} else {
		req = httptest.NewRequest(method, path, nil)
	}
	req.Host = "127.0.0.1:7070"
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(w, req)
	return w
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func reconcilerEvent(kind, service, reason string) reconciler.Event {
	return reconciler.Event{Kind: reconciler.EventKind(kind), Service: service, Reason: reason}
}
