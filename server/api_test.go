package server

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/drover-dev/drover/reconciler"
)

const jsonCT = "application/json"

// TestRoutes: every route answers, and bad input gets a clear error and orders nothing.
func TestRoutes(t *testing.T) {
	tests := []struct {
		name, method, path, body string
		hdr                      []string
		wantCode                 int
		wantBody                 string // substring
		wantOrders               []string
	}{
		{name: "healthz", method: "GET", path: "/healthz", wantCode: 200, wantBody: "ok"},
		{name: "status legacy", method: "GET", path: "/status", wantCode: 200, wantBody: `"fleet": "demo"`},
		{name: "api status", method: "GET", path: "/api/v1/status", wantCode: 200, wantBody: `"phase": "rolling-out"`},
		{name: "history all", method: "GET", path: "/api/v1/history", wantCode: 200, wantBody: `"kind": "rollout_failed"`},
		{name: "history service", method: "GET", path: "/api/v1/history?service=api&limit=1", wantCode: 200, wantBody: `"kind": "rollout_started"`},
		{name: "history empty is []", method: "GET", path: "/api/v1/history?service=nothing", wantCode: 200, wantBody: "[]"},
		{name: "history bad limit", method: "GET", path: "/api/v1/history?limit=ten", wantCode: 400, wantBody: `limit \"ten\": want a whole number`},
		{name: "history negative limit", method: "GET", path: "/api/v1/history?limit=-1", wantCode: 400, wantBody: "limit"},
		{name: "history huge limit", method: "GET", path: "/api/v1/history?limit=99999999", wantCode: 400, wantBody: "limit"},
		{name: "history long service", method: "GET", path: "/api/v1/history?service=" + strings.Repeat("x", 100), wantCode: 400, wantBody: "service: 100 bytes"},
		{name: "suspend", method: "POST", path: "/api/v1/services/web/suspend", body: `{"reason": "disk maintenance"}`, hdr: []string{"Content-Type", jsonCT},
			wantCode: 200, wantBody: "suspend web: done", wantOrders: []string{"suspend web disk maintenance"}},
		{name: "suspend no body", method: "POST", path: "/api/v1/services/web/suspend", wantCode: 200, wantOrders: []string{"suspend web "}},
		{name: "suspend unknown service", method: "POST", path: "/api/v1/services/nope/suspend", body: `{}`,
			wantCode: 404, wantBody: `suspend: no service \"nope\" in fleet \"demo\" at a1b2c3d4e5f6 (services: web, api, db, cache)`},
		{name: "suspend bad json", method: "POST", path: "/api/v1/services/web/suspend", body: `{"reason":`, wantCode: 400, wantBody: "body:"},
		{name: "suspend unknown field", method: "POST", path: "/api/v1/services/web/suspend", body: `{"reason":"x","force":true}`, wantCode: 400, wantBody: `unknown field \"force\"`},
		{name: "suspend two values", method: "POST", path: "/api/v1/services/web/suspend", body: `{} {}`, wantCode: 400, wantBody: "more than one"},
		{name: "suspend wrong type", method: "POST", path: "/api/v1/services/web/suspend", body: `{"reason": 5}`, wantCode: 400, wantBody: "body:"},
		{name: "suspend form body", method: "POST", path: "/api/v1/services/web/suspend", body: `reason=x`, hdr: []string{"Content-Type", "application/x-www-form-urlencoded"},
			wantCode: 415, wantBody: "want application/json"},
		{name: "suspend huge body", method: "POST", path: "/api/v1/services/web/suspend", body: `{"reason":"` + strings.Repeat("a", 70<<10) + `"}`, wantCode: 413, wantBody: "over 65536 bytes"},
		{name: "suspend long reason", method: "POST", path: "/api/v1/services/web/suspend", body: `{"reason":"` + strings.Repeat("a", 2000) + `"}`, wantCode: 400, wantBody: "reason: 2000 bytes"},
		{name: "suspend control char", method: "POST", path: "/api/v1/services/web/suspend", body: `{"reason":"a\u001bb"}`, wantCode: 400, wantBody: "unprintable character U+001B"},
		{name: "resume", method: "POST", path: "/api/v1/services/cache/resume", wantCode: 200, wantOrders: []string{"resume cache"}},
		{name: "resume unknown", method: "POST", path: "/api/v1/services/nope/resume", wantCode: 404, wantBody: "no service"},
		{name: "retry", method: "POST", path: "/api/v1/services/db/retry", wantCode: 200, wantOrders: []string{"retry db"}},
		{name: "retry unknown", method: "POST", path: "/api/v1/services/nope/retry", wantCode: 404, wantBody: "no service"},
		{name: "retry by GET", method: "GET", path: "/api/v1/services/db/retry", wantCode: 404, wantBody: "no such API endpoint: GET"},
		{name: "reconcile", method: "POST", path: "/api/v1/reconcile", wantCode: 202, wantOrders: []string{"reconcile"}},
		{name: "unknown api", method: "GET", path: "/api/v2/status", wantCode: 404, wantBody: `"error": "no such API endpoint`},
		{name: "metrics", method: "GET", path: "/metrics", wantCode: 200, wantBody: "drover_service_replicas_desired"},
		{name: "fleet page", method: "GET", path: "/", wantCode: 200, wantBody: `data-service="api"`},
		{name: "fleet partial", method: "GET", path: "/?partial=1", wantCode: 200, wantBody: `<section class="fleet">`},
		{name: "fleet at a glance", method: "GET", path: "/", wantCode: 200, wantBody: `<b>7</b>/8 VMs passing</span> <span class="g-rolling"><b>1</b> rolling out</span> <span class="g-held"><b>1</b> held</span> <span class="g-suspended"><b>1</b> suspended`},
		{name: "service page", method: "GET", path: "/services/api", wantCode: 200, wantBody: "rollout_started"},
		{name: "service partial", method: "GET", path: "/services/api?partial=1", wantCode: 200, wantBody: "History"},
		{name: "gone service with history", method: "GET", path: "/services/old", wantCode: 200, wantBody: "not in the fleet"},
		{name: "unknown service page", method: "GET", path: "/services/nope", wantCode: 404, wantBody: `no service &#34;nope&#34;`},
		{name: "static js", method: "GET", path: "/static/app.js", wantCode: 200, wantBody: "EventSource"},
		{name: "static css", method: "GET", path: "/static/style.css", wantCode: 200, wantBody: "progress"},
		{name: "static missing", method: "GET", path: "/static/nope.js", wantCode: 404},
		{name: "unknown page", method: "GET", path: "/nope", wantCode: 404},
		{name: "login without token", method: "GET", path: "/login", wantCode: 303},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.view.publish(reconciler.Event{Kind: reconciler.EventRolloutStarted, Service: "api", Version: "2.0.0"})
			f.view.publish(reconciler.Event{Kind: reconciler.EventRolloutFailed, Service: "db", Reason: hostileReason})
			f.view.publish(reconciler.Event{Kind: reconciler.EventVMRetired, Service: "old", VMs: []string{"old-1"}})
			w := f.do(tt.method, tt.path, tt.body, tt.hdr...)
			if w.Code != tt.wantCode || !strings.Contains(w.Body.String(), tt.wantBody) {
				t.Errorf("%s %s: got %d %q\nwant %d containing %q", tt.method, tt.path, w.Code, truncate(w.Body.String(), 600), tt.wantCode, tt.wantBody)
			}
			if got := f.ctl.got(); !slices.Equal(got, tt.wantOrders) {
				t.Errorf("%s %s: orders got %q, want %q", tt.method, tt.path, got, tt.wantOrders)
			}
			if strings.HasPrefix(tt.path, "/api/") && w.Header().Get("Content-Type") != jsonCT {
				t.Errorf("%s %s: Content-Type %q, want %s", tt.method, tt.path, w.Header().Get("Content-Type"), jsonCT)
			}
		})
	}
}

// TestAPIStatusJSON: the status decodes back into the View's FleetStatus.
func TestAPIStatusJSON(t *testing.T) {
	f := newFixture(t, nil)
	w := f.do("GET", "/api/v1/status", "")
	var got reconciler.FleetStatus
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := sampleFleet()
	if got.Fleet != want.Fleet || len(got.Services) != len(want.Services) || got.Services[2].Held.Reason != hostileReason ||
		got.Services[1].Progress != want.Services[1].Progress {
		t.Errorf("status round trip:\ngot  %+v\nwant %+v", got, want)
	}
}

// TestViewAndControlErrors: a View that cannot answer is 503 naming why; a Control
// that fails is 500 naming the order.
func TestViewAndControlErrors(t *testing.T) {
	f := newFixture(t, nil)
	f.ctl.err = errors.New("consul: connection refused")
	for _, tt := range []struct {
		method, path string
		code         int
		want         string
	}{
		{"POST", "/api/v1/services/web/resume", 500, "resume web: consul: connection refused"},
		{"POST", "/api/v1/reconcile", 500, "reconcile: consul: connection refused"},
	} {
		if w := f.do(tt.method, tt.path, ""); w.Code != tt.code || !strings.Contains(w.Body.String(), tt.want) {
			t.Errorf("%s %s: got %d %s, want %d %q", tt.method, tt.path, w.Code, w.Body, tt.code, tt.want)
		}
	}
	f.view.stErr = errors.New("consul kv: timeout")
	for _, tt := range []struct {
		method, path string
		code         int
		want         string
	}{
		{"GET", "/api/v1/status", 503, "read fleet status: consul kv: timeout"},
		{"GET", "/api/v1/history", 503, "read history: consul kv: timeout"},
		{"POST", "/api/v1/services/web/suspend", 503, "read fleet status"},
		{"GET", "/", 503, "Status unavailable: consul kv: timeout"},
		{"GET", "/?partial=1", 200, "Status unavailable: consul kv: timeout"},
		{"GET", "/services/web", 503, "consul kv: timeout"},
		{"GET", "/metrics", 200, "drover_status_up 0"},
	} {
		if w := f.do(tt.method, tt.path, ""); w.Code != tt.code || !strings.Contains(w.Body.String(), tt.want) {
			t.Errorf("%s %s: got %d %s, want %d %q", tt.method, tt.path, w.Code, truncate(w.Body.String(), 400), tt.code, tt.want)
		}
	}
}

// TestOrderBeforeAnyRevision: with no revision read, the fleet is not known: the
// order goes to Control, which decides.
func TestOrderBeforeAnyRevision(t *testing.T) {
	f := newFixture(t, nil)
	f.view.update(func(st *reconciler.FleetStatus) { *st = reconciler.FleetStatus{Fleet: "demo"} })
	w := f.do("POST", "/api/v1/services/web/resume", "")
	if got := f.ctl.got(); w.Code != 200 || len(got) != 1 || got[0] != "resume web" {
		t.Errorf("resume before any revision: got %d, orders %q; want 200 and the order passed on", w.Code, got)
	}
}

// TestLegacyStatus: with the runner's record handed over, /status shows it as before.
func TestLegacyStatus(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.Status = func() any { return map[string]any{"revision": "abc", "converged": true} }
	})
	w := f.do("GET", "/status", "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"converged": true`) {
		t.Errorf("/status: got %d %s, want the runner's record", w.Code, w.Body)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	v, c := newFakeView(sampleFleet()), &fakeControl{}
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{Control: c}, "View and Config.Control are required"},
		{Config{View: v}, "View and Config.Control are required"},
		{Config{View: v, Control: c, Listen: "7070"}, `listen address "7070"`},
	} {
		if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v): err %v, want %q", tt.cfg, err, tt.want)
		}
	}
}
