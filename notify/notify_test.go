package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-dev/drover/reconciler"
)

// received is one notification as a real HTTP receiver got it.
type received struct {
	header http.Header
	body   []byte
}

// receiver is an httptest server on 127.0.0.1 that records what it gets and
// answers with status(n) for the n-th request (from 1).
type testReceiver struct {
	srv    *httptest.Server
	got    chan received
	mu     sync.Mutex
	n      int
	status func(n int) int
}

func newReceiver(t testing.TB, status func(n int) int) *testReceiver {
	t.Helper()
	r := &testReceiver{got: make(chan received, 1000), status: status}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.n++
		n := r.n
		r.mu.Unlock()
		code := http.StatusOK
		if r.status != nil {
			code = r.status(n)
		}
		w.WriteHeader(code)
		if code/100 == 2 {
			r.got <- received{req.Header.Clone(), body}
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *testReceiver) requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// next waits for the next notification received, failing after a deadline.
func (r *testReceiver) next(t testing.TB) received {
	t.Helper()
	select {
	case got := <-r.got:
		return got
	case <-time.After(10 * time.Second):
		t.Fatal("no notification received within 10s")
		return received{}
	}
}

// chanView is the reconciler's Subscribe, fed by the test.
type chanView struct {
	ch       chan reconciler.Event
	canceled chan struct{}
	once     sync.Once
}

func newView() *chanView {
	return &chanView{ch: make(chan reconciler.Event), canceled: make(chan struct{})}
}

func (v *chanView) Subscribe() (<-chan reconciler.Event, func()) {
	return v.ch, func() { v.once.Do(func() { close(v.canceled) }) }
}

// start runs n on v until the test ends (and waits for Run to return).
func start(t testing.TB, n *Notifier, v *chanView) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx, v) }()
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30s of its ctx ending")
		}
	}
	t.Cleanup(stop)
	return cancel
}

func event(seq uint64, kind reconciler.EventKind) reconciler.Event {
	return reconciler.Event{Seq: seq, Time: time.Date(2026, 12, 4, 19, 30, 0, 0, time.UTC), Kind: kind, Fleet: "prod", Service: "web",
		Revision: "1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d", Version: "1.4.2", VMs: []string{"web-1a2b3c4d-x1"}, Reason: "health gate: deadline 2m0s passed"}
}

// send hands ev to the notifier as the reconciler's View would, failing if it is not
// taken within a deadline (a notifier that blocks its publisher).
func (v *chanView) send(t testing.TB, ev reconciler.Event) {
	t.Helper()
	select {
	case v.ch <- ev:
	case <-time.After(10 * time.Second):
		t.Fatalf("the notifier did not take event %d within 10s: it blocks its publisher", ev.Seq)
	}
}

func fastConfig(urls ...string) Config {
	return Config{URLs: urls, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Timeout: 5 * time.Second}
}

func TestDelivery(t *testing.T) {
	rcv := newReceiver(t, nil)
	n, err := New(fastConfig(rcv.srv.URL+"/hook"), nil)
	if err != nil {
		t.Fatal(err)
	}
	v := newView()
	start(t, n, v)
	kinds := []reconciler.EventKind{reconciler.EventRolloutStarted, reconciler.EventVMCreated, reconciler.EventRolloutFailed}
	for i, k := range kinds {
		v.send(t, event(uint64(i+1), k))
	}
	for i, k := range kinds {
		got := rcv.next(t)
		var ev reconciler.Event
		if err := json.Unmarshal(got.body, &ev); err != nil {
			t.Fatalf("body %q: %v", got.body, err)
		}
		want := event(uint64(i+1), k)
		wantJSON, _ := json.Marshal(want)
		if !bytes.Equal(got.body, wantJSON) {
			t.Errorf("event %d body:\n got %s\nwant %s", i+1, got.body, wantJSON)
		}
		for h, w := range map[string]string{"Content-Type": "application/json", HeaderEvent: string(k), HeaderDelivery: fmt.Sprintf("prod-%d", i+1)} {
			if g := got.header.Get(h); g != w {
				t.Errorf("event %d header %s: got %q, want %q", i+1, h, g, w)
			}
		}
		if g := got.header.Get(HeaderSignature); g != "" {
			t.Errorf("unsigned notifier sent %s: %q", HeaderSignature, g)
		}
	}
	waitStats(t, n, func(s Stats) bool { return s.Delivered == 3 && s.Failed == 0 && s.Dropped == 0 }, "3 delivered")
}

func TestSignatureVerifies(t *testing.T) {
	rcv := newReceiver(t, nil)
	secret := []byte("a-long-shared-secret-0123456789")
	now := time.Unix(1_800_000_000, 0)
	cfg := fastConfig(rcv.srv.URL)
	cfg.Secret, cfg.Now = secret, func() time.Time { return now }
	n, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := newView()
	start(t, n, v)
	v.send(t, event(7, reconciler.EventRolledBack))
	got := rcv.next(t)
	ts, sig := got.header.Get(HeaderTimestamp), got.header.Get(HeaderSignature)
	if ts != "1800000000" || !strings.HasPrefix(sig, "sha256=") {
		t.Fatalf("headers: got timestamp %q signature %q, want 1800000000 and sha256=…", ts, sig)
	}
	tolerance := 5 * time.Minute
	if err := Verify(secret, ts, sig, got.body, now.Add(time.Minute), tolerance); err != nil {
		t.Errorf("Verify of what was received: %v", err)
	}
	for _, tc := range []struct {
		name   string
		secret []byte
		ts     string
		body   []byte
		at     time.Time
		want   error
	}{
		{"wrong secret", []byte("another secret"), ts, got.body, now, ErrBadSignature},
		{"body changed", secret, ts, bytes.Replace(got.body, []byte("web"), []byte("db"), 1), now, ErrBadSignature},
		{"timestamp changed", secret, "1800000001", got.body, now, ErrBadSignature},
		{"replayed later", secret, ts, got.body, now.Add(10 * time.Minute), ErrStale},
		{"no timestamp", secret, "", got.body, now, ErrStale},
	} {
		if err := Verify(tc.secret, tc.ts, sig, tc.body, tc.at, tolerance); !errors.Is(err, tc.want) {
			t.Errorf("%s: Verify got %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestRetryAfter500s(t *testing.T) {
	rcv := newReceiver(t, func(n int) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	n, err := New(fastConfig(rcv.srv.URL), nil)
	if err != nil {
		t.Fatal(err)
	}
	v := newView()
	start(t, n, v)
	v.send(t, event(1, reconciler.EventRolloutFailed))
	got := rcv.next(t)
	if d := got.header.Get(HeaderDelivery); d != "prod-1" {
		t.Errorf("delivery ID after retries: got %q, want prod-1", d)
	}
	if r := rcv.requests(); r != 3 {
		t.Errorf("requests: got %d, want 3 (two 500s, then 200)", r)
	}
	waitStats(t, n, func(s Stats) bool { return s.Delivered == 1 && s.Retries == 2 && s.Failed == 0 }, "1 delivered after 2 retries")
}

func TestGivesUp(t *testing.T) {
	for _, tc := range []struct {
		name         string
		status       int
		wantRequests int
	}{
		{"5xx every time: all attempts", http.StatusBadGateway, 3},
		{"4xx: no retry", http.StatusBadRequest, 1},
		{"redirect: not followed", http.StatusTemporaryRedirect, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv := newReceiver(t, func(int) int { return tc.status })
			cfg := fastConfig(rcv.srv.URL)
			cfg.Attempts = 3
			n, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			v := newView()
			start(t, n, v)
			v.send(t, event(1, reconciler.EventRolloutFailed))
			waitStats(t, n, func(s Stats) bool { return s.Failed == 1 }, "1 failed")
			if r := rcv.requests(); r != tc.wantRequests {
				t.Errorf("requests: got %d, want %d", r, tc.wantRequests)
			}
		})
	}
}

// hangingReceiver accepts requests and never answers until the test ends.
func hangingReceiver(t testing.TB) (*httptest.Server, chan struct{}) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() {
		close(release)
		srv.Close()
	})
	return srv, release
}

func TestDeadReceiverDoesNotBlock(t *testing.T) {
	hung, _ := hangingReceiver(t)
	ok := newReceiver(t, nil)
	cfg := fastConfig(hung.URL, ok.srv.URL)
	cfg.QueueSize = 8
	cfg.Timeout = time.Hour // only the queue bound can save the publisher
	cfg.Drain = 10 * time.Millisecond
	n, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := newView()
	start(t, n, v)
	const events = 200
	for i := 1; i <= events; i++ {
		v.send(t, event(uint64(i), reconciler.EventVMCreated))
		// The healthy receiver keeps up while the other hangs.
		if got := ok.next(t); got.header.Get(HeaderDelivery) != fmt.Sprintf("prod-%d", i) {
			t.Fatalf("healthy receiver got %s, want prod-%d", got.header.Get(HeaderDelivery), i)
		}
	}
	waitFor(t, func() bool { return n.Stats()[1].Delivered == events }, "the healthy receiver's deliveries counted")
	st := n.Stats()
	// One in flight, QueueSize queued, the rest dropped and counted.
	if want := uint64(events - 1 - cfg.QueueSize); st[0].Dropped != want || st[0].Delivered != 0 {
		t.Errorf("hanging receiver: got %+v, want %d dropped, none delivered", st[0], want)
	}
	if st[1].Delivered != events || st[1].Dropped != 0 {
		t.Errorf("healthy receiver: got %+v, want %d delivered", st[1], events)
	}
}

func TestFormats(t *testing.T) {
	ev := event(3, reconciler.EventRolloutFailed)
	ev.Version = "<!channel> & <b>"
	for _, tc := range []struct {
		format Format
		want   map[string]string
	}{
		{FormatSlack, map[string]string{"text": "[prod] web: rollout failed, revision 1a2b3c4d, version &lt;!channel&gt; &amp; &lt;b&gt;, VMs web-1a2b3c4d-x1: health gate: deadline 2m0s passed"}},
		{FormatMatrix, map[string]string{
			"text": "[prod] web: rollout failed, revision 1a2b3c4d, version <!channel> & <b>, VMs web-1a2b3c4d-x1: health gate: deadline 2m0s passed",
			"html": "[prod] <b>web</b>: <b>rollout failed</b>, revision 1a2b3c4d, version &lt;!channel&gt; &amp; &lt;b&gt;, VMs web-1a2b3c4d-x1: health gate: deadline 2m0s passed",
		}},
	} {
		t.Run(string(tc.format), func(t *testing.T) {
			rcv := newReceiver(t, nil)
			cfg := fastConfig(rcv.srv.URL)
			cfg.Format = tc.format
			n, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			v := newView()
			start(t, n, v)
			v.send(t, ev)
			got := rcv.next(t)
			var body map[string]string
			if err := json.Unmarshal(got.body, &body); err != nil {
				t.Fatalf("body %s: %v", got.body, err)
			}
			if len(body) != len(tc.want) {
				t.Errorf("fields: got %q, want %q", body, tc.want)
			}
			for k, w := range tc.want {
				if body[k] != w {
					t.Errorf("%s:\n got %q\nwant %q", k, body[k], w)
				}
			}
		})
	}
	if _, err := ParseFormat("xml"); err == nil || !strings.Contains(err.Error(), "json, slack or matrix") {
		t.Errorf("ParseFormat(xml): got %v, want the choices", err)
	}
}

// TestDrainOnStop: events handed over before the stop still go out.
func TestDrainOnStop(t *testing.T) {
	release := make(chan struct{})
	rcv := newReceiver(t, func(n int) int {
		if n == 1 {
			<-release // hold the first so the rest queue up
		}
		return http.StatusOK
	})
	n, err := New(fastConfig(rcv.srv.URL), nil)
	if err != nil {
		t.Fatal(err)
	}
	v := newView()
	stop := start(t, n, v)
	for i := 1; i <= 5; i++ {
		v.send(t, event(uint64(i), reconciler.EventVMRetired))
	}
	stop()
	close(release)
	for i := 1; i <= 5; i++ {
		if got := rcv.next(t); got.header.Get(HeaderDelivery) != fmt.Sprintf("prod-%d", i) {
			t.Errorf("after stop: got %s, want prod-%d", got.header.Get(HeaderDelivery), i)
		}
	}
}

func TestRedaction(t *testing.T) {
	const secretPath, secretQuery, secretPass = "T000/B000/pathsecret123", "querysecret456", "passsecret789"
	failing := newReceiver(t, func(int) int { return http.StatusServiceUnavailable })
	// A port nothing listens on: connection refused, an error that quotes the URL.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	hung, _ := hangingReceiver(t)
	withSecrets := func(base string) string {
		u, _ := url.Parse(base)
		u.User = url.UserPassword("hook", secretPass)
		u.Path = "/services/" + secretPath
		u.RawQuery = "token=" + secretQuery
		return u.String()
	}
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := fastConfig(withSecrets(failing.srv.URL), withSecrets("http://"+dead), withSecrets(hung.URL))
	cfg.Attempts, cfg.Timeout, cfg.QueueSize = 2, 50*time.Millisecond, 1
	n, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	v := newView()
	start(t, n, v)
	for i := 1; i <= 3; i++ { // the third overflows the hung receiver's queue
		v.send(t, event(uint64(i), reconciler.EventRolloutFailed))
	}
	waitStats(t, n, func(s Stats) bool { return s.Failed+s.Dropped == 3 }, "the 503 receiver's events failed or dropped")
	for _, s := range n.Stats() {
		if strings.Contains(s.Receiver, "secret") {
			t.Errorf("Stats shows %q", s.Receiver)
		}
	}
	waitFor(t, func() bool { st := n.Stats(); return st[1].Failed+st[1].Dropped == 3 && st[2].Dropped >= 1 }, "the dead and the hung receiver failed")
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	for _, s := range []string{secretPath, "pathsecret", secretQuery, secretPass} {
		if strings.Contains(out, s) {
			t.Errorf("logs show %q:\n%s", s, out)
		}
	}
	for _, want := range []string{"answered 503", "connection refused", "#1 http://xxxxx@127.0.0.1", "/xxxxx"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs do not say %q:\n%s", want, out)
		}
	}
	// Refused at start-up, with the URL masked in the error.
	_, err = New(Config{URLs: []string{"ftp://hook:" + secretPass + "@example.org/" + secretPath}}, nil)
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("New(ftp URL with secrets): got %v, want a refusal without secrets", err)
	}
}

func TestRefusesBadURLs(t *testing.T) {
	for _, raw := range []string{"ftp://example.org/hook", "file:///etc/passwd", "hooks.example.org/x", "http://", "https:///path", "gopher://x", ":"} {
		_, err := New(Config{URLs: []string{"http://127.0.0.1:1/ok", raw}}, nil)
		if err == nil || !strings.Contains(err.Error(), "#2") {
			t.Errorf("New(%q): got %v, want a refusal naming receiver #2", raw, err)
		}
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Error("New with no URL: got nil error")
	}
	if _, err := New(Config{URLs: []string{"https://example.org/x"}, Format: "xml"}, nil); err == nil {
		t.Error("New with format xml: got nil error")
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func waitStats(t testing.TB, n *Notifier, ok func(Stats) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(n.Stats()[0]) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s; stats %+v", what, n.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

// waitFor polls cond until it holds, failing after a deadline.
func waitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkEventToReceiver is one event's trip: handed to the notifier by the view,
// queued, POSTed over loopback, and read by a real HTTP receiver. The target
// is 200 ms.
func BenchmarkEventToReceiver(b *testing.B) {
	rcv := newReceiver(b, nil)
	cfg := fastConfig(rcv.srv.URL)
	cfg.Secret = []byte("bench-secret")
	n, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	v := newView()
	start(b, n, v)
	var worst time.Duration
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		v.send(b, event(uint64(i+1), reconciler.EventVMCreated))
		rcv.next(b)
		worst = max(worst, time.Since(t0))
	}
	b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
}
