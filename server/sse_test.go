package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/drover-dev/drover/reconciler"
)

// sseFrame is one server-sent event as read off the wire.
type sseFrame struct {
	id, event, data string
	comment         bool
}

// sseClient reads frames from one stream.
type sseClient struct {
	resp   *http.Response
	frames chan sseFrame
}

func openStream(t testing.TB, url string, hdr ...string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	// A stream that never answers fails the test instead of hanging it.
	cl := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 10 * time.Second}}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close(); cl.CloseIdleConnections() })
	c := &sseClient{resp: resp, frames: make(chan sseFrame, 100)}
	if resp.StatusCode != 200 {
		return c
	}
	go func() {
		defer close(c.frames)
		sc := bufio.NewScanner(resp.Body)
		var f sseFrame
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if f != (sseFrame{}) {
					c.frames <- f
				}
				f = sseFrame{}
			case strings.HasPrefix(line, ":"):
				f.comment = true
			case strings.HasPrefix(line, "id: "):
				f.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				f.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				f.data = line[6:]
			}
		}
	}()
	return c
}

// next returns the next frame that is not a comment.
func (c *sseClient) next(t testing.TB) sseFrame {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				t.Fatal("event stream ended")
			}
			if !f.comment {
				return f
			}
		case <-timeout:
			t.Fatal("no event within 10s")
		}
	}
}

func (f sseFrame) decode(t testing.TB) reconciler.Event {
	t.Helper()
	var e reconciler.Event
	if err := json.Unmarshal([]byte(f.data), &e); err != nil {
		t.Fatalf("event data %q: %v", f.data, err)
	}
	return e
}

func TestEventStream(t *testing.T) {
	f := newFixture(t, nil)
	ts := httptest.NewServer(f.srv.Handler())
	t.Cleanup(ts.Close)

	all := openStream(t, ts.URL+"/api/v1/events")
	if ct := all.resp.Header.Get("Content-Type"); all.resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("GET /api/v1/events: %d %q, want 200 text/event-stream", all.resp.StatusCode, ct)
	}
	web := openStream(t, ts.URL+"/api/v1/events?service=web")
	f.view.waitSubscribers(t, 2)

	sent := f.view.publish(reconciler.Event{Kind: reconciler.EventRolloutFailed, Service: "api", Version: "2.0.0",
		Revision: "abc", VMs: []string{"api-1", "api-2"}, Reason: "line one\nline two: </script>"})
	f.view.publish(reconciler.Event{Kind: reconciler.EventVMCreated, Service: "web", VMs: []string{"web-9"}})

	fr := all.next(t)
	got := fr.decode(t)
	if fr.event != "rollout_failed" || fr.id != fmt.Sprint(sent.Seq) || got.Reason != sent.Reason || got.Service != "api" || len(got.VMs) != 2 {
		t.Errorf("first frame: got id %s event %s %+v\nwant id %d event rollout_failed %+v", fr.id, fr.event, got, sent.Seq, sent)
	}
	if fr := all.next(t); fr.event != "vm_created" {
		t.Errorf("second frame: got %s, want vm_created", fr.event)
	}
	if fr := web.next(t); fr.event != "vm_created" || fr.decode(t).Service != "web" {
		t.Errorf("?service=web: got %s %s, want only web's vm_created", fr.event, fr.data)
	}
}

// TestEventStreamReplay: ?since= (or Last-Event-ID) first sends the stored events after
// that seq, then the live ones, none twice.
func TestEventStreamReplay(t *testing.T) {
	f := newFixture(t, nil)
	ts := httptest.NewServer(f.srv.Handler())
	t.Cleanup(ts.Close)
	for i := 0; i < 3; i++ {
		f.view.publish(reconciler.Event{Kind: reconciler.EventVMCreated, Service: "web"})
	}
	for _, tt := range []struct {
		name string
		url  string
		hdr  []string
	}{
		{"since", "/api/v1/events?since=1", nil},
		{"Last-Event-ID", "/api/v1/events", []string{"Last-Event-ID", "1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f.view.waitSubscribers(t, 0) // the last subtest's stream is gone
			// One event lands between the stream's subscription and its history
			// read: it is in both, and must go out once.
			between := make(chan reconciler.Event, 1)
			f.view.mu.Lock()
			f.view.beforeHistory = func() {
				between <- f.view.publish(reconciler.Event{Kind: reconciler.EventDriftRepaired, Service: "web"})
			}
			f.view.mu.Unlock()
			c := openStream(t, ts.URL+tt.url, tt.hdr...)
			<-between
			live := f.view.publish(reconciler.Event{Kind: reconciler.EventVMRetired, Service: "web"})
			var ids, want []string
			for seq := uint64(2); seq <= live.Seq; seq++ {
				ids = append(ids, c.next(t).id)
				want = append(want, fmt.Sprint(seq))
			}
			if fmt.Sprint(ids) != fmt.Sprint(want) {
				t.Errorf("ids: got %v, want %v", ids, want)
			}
		})
	}
	w := f.do("GET", "/api/v1/events?since=abc", "")
	if w.Code != 400 || !strings.Contains(w.Body.String(), `since \"abc\"`) {
		t.Errorf("since=abc: got %d %s, want 400 naming it", w.Code, w.Body)
	}
}

func TestEventStreamHeartbeat(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Heartbeat = 20 * time.Millisecond })
	ts := httptest.NewServer(f.srv.Handler())
	t.Cleanup(ts.Close)
	c := openStream(t, ts.URL+"/api/v1/events")
	beats := 0
	timeout := time.After(10 * time.Second)
	for beats < 3 {
		select {
		case fr := <-c.frames:
			if fr.comment {
				beats++
			}
		case <-timeout:
			t.Fatalf("%d heartbeats in 10s with Heartbeat 20ms, want 3", beats)
		}
	}
}

// TestEventStreamBounded: past MaxStreams a client gets 503 with Retry-After; a
// closed stream frees its slot and its subscription.
func TestEventStreamBounded(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxStreams = 2 })
	ts := httptest.NewServer(f.srv.Handler())
	t.Cleanup(ts.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	first := openStreamCtx(t, ctx, ts.URL)
	openStream(t, ts.URL+"/api/v1/events")
	f.view.waitSubscribers(t, 2)
	third := openStream(t, ts.URL+"/api/v1/events")
	if third.resp.StatusCode != 503 || third.resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third stream with MaxStreams 2: %d, Retry-After %q; want 503 with Retry-After", third.resp.StatusCode, third.resp.Header.Get("Retry-After"))
	}
	cancel()
	first.Body.Close()
	f.view.waitSubscribers(t, 1)
	waitFor(t, 10*time.Second, "a slot after one stream closed", func() bool {
		c := openStream(t, ts.URL+"/api/v1/events")
		return c.resp.StatusCode == 200
	})
}

func openStreamCtx(t *testing.T, ctx context.Context, base string) *http.Response {
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestSSEName(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"rollout_failed", "rollout_failed"},
		{"", "message"},
		{"x\ndata: forged", "message"},
		{"Upper", "message"},
	} {
		if got := sseName(tt.in); got != tt.want {
			t.Errorf("sseName(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}
