package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/testenv"
)

// fakeAPI serves the shapes of server/'s /api/v1 (GET status, history, events; POST
// orders) from memory, with a bearer token when token is set.
type fakeAPI struct {
	t     *testing.T
	token string

	mu        sync.Mutex
	status    reconciler.FleetStatus
	events    []reconciler.Event
	orders    []string // "suspend web reason", "reconcile", …
	streams   int      // SSE connections so far
	stream    func(n int, w http.ResponseWriter, flush func(), done <-chan struct{})
	lastQuery string
}

func newFakeAPI(t *testing.T, token string) (*fakeAPI, *httptest.Server) {
	f := &fakeAPI{t: t, token: token, status: sampleStatus()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		writeJSON(w, http.StatusOK, f.status)
	})
	mux.HandleFunc("GET /api/v1/history", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.lastQuery = r.URL.RawQuery
		svc := r.URL.Query().Get("service")
		out := []reconciler.Event{}
		for _, ev := range f.events {
			if svc == "" || ev.Service == svc {
				out = append(out, ev)
			}
		}
		var limit int
		fmt.Sscan(r.URL.Query().Get("limit"), &limit)
		if limit > 0 && len(out) > limit {
			out = out[len(out)-limit:]
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /api/v1/events", func(w http.ResponseWriter, r *http.Request) {
		var since uint64
		fmt.Sscan(r.URL.Query().Get("since"), &since)
		f.mu.Lock()
		f.streams++
		n, stream := f.streams, f.stream
		var replay []reconciler.Event
		for _, ev := range f.events {
			if r.URL.Query().Has("since") && ev.Seq > since {
				replay = append(replay, ev)
			}
		}
		f.mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "retry: 2000\n: connected\n\n")
		for _, ev := range replay { // like server/sse.go's ?since=
			raw, _ := json.Marshal(ev)
			fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", ev.Seq, ev.Kind, raw)
		}
		fl := w.(http.Flusher)
		fl.Flush()
		if stream != nil {
			stream(n, w, fl.Flush, r.Context().Done())
		}
	})
	mux.HandleFunc("POST /api/v1/services/{name}/{verb}", func(w http.ResponseWriter, r *http.Request) {
		name, verb := r.PathValue("name"), r.PathValue("verb")
		var body struct {
			Reason string `json:"reason"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		f.mu.Lock()
		defer f.mu.Unlock()
		known := false
		for _, s := range f.status.Services {
			known = known || s.Name == name
		}
		if !known {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("unknown service %q", name)})
			return
		}
		f.orders = append(f.orders, strings.TrimSpace(verb+" "+name+" "+body.Reason))
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("POST /api/v1/reconcile", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.orders = append(f.orders, "reconcile")
		f.mu.Unlock()
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "started"})
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return f, srv
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

var t0 = time.Date(2026, 12, 4, 19, 0, 0, 0, time.UTC)

func sampleStatus() reconciler.FleetStatus {
	return reconciler.FleetStatus{
		Fleet: "prod", Revision: "1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d", Ref: "branch:main", Leader: true,
		Services: []reconciler.ServiceStatus{
			{Name: "web", Version: "1.4.2", Replicas: 2, Phase: "rolling-out",
				Versions: []reconciler.VersionCount{{Version: "1.4.1", Passing: 2, Total: 2}, {Version: "1.4.2", Passing: 1, Total: 2}},
				Progress: reconciler.Progress{Passing: 1, Wanted: 2}},
			{Name: "db", Version: "15", Replicas: 1, Phase: "held",
				Versions: []reconciler.VersionCount{{Version: "14", Passing: 1, Total: 1}},
				Held:     &reconciler.Hold{Revision: "ffeeddccbbaa", Reason: "health gate: deadline 2m0s passed", At: t0}},
			{Name: "cache", Version: "7", Replicas: 1, Phase: "suspended",
				Versions:  []reconciler.VersionCount{{Version: "7", Passing: 1, Total: 1}},
				Suspended: &reconciler.Suspended{Reason: "maintenance \x1b[31mwindow", At: t0}},
		},
	}
}

// ctl runs a CLI command in-process against server.
func ctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func tokenFile(t *testing.T, tok string) string {
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCtlStatus(t *testing.T) {
	_, srv := newFakeAPI(t, "")
	code, out, errs := ctl(t, "status", "--server", srv.URL)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %s", code, errs)
	}
	for _, want := range []string{
		"fleet prod  revision 1a2b3c4d (branch:main)  leader",
		"SERVICE  VERSION  PASSING/TOTAL",
		"web      1.4.2    1.4.1 2/2, 1.4.2 1/2  rolling-out  1/2       -         -",

		"db       15       14 1/1                held         -         ffeeddcc  -",
		"db: revision ffeeddcc held since 2026-12-04T19:00:00Z: health gate: deadline 2m0s passed",
		"cache: suspended since 2026-12-04T19:00:00Z: maintenance  [31mwindow",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("status output passes an escape sequence through:\n%q", out)
	}
	code, out, _ = ctl(t, "status", "-o", "json", "--server", srv.URL)
	var st reconciler.FleetStatus
	if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil || len(st.Services) != 3 || st.Services[1].Held == nil {
		t.Errorf("status -o json: exit %d, %v, got %+v", code, err, st)
	}
}

func TestCtlToken(t *testing.T) {
	_, srv := newFakeAPI(t, "s3cret-token")
	dead := deadAddr(t)
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"no token", nil, exitFail, "401: unauthorized (give the daemon's --listen-token-file token with --token-file)"},
		{"wrong token", []string{"--token-file", tokenFile(t, "wrong")}, exitFail, "401"},
		{"right token", []string{"--token-file", tokenFile(t, "s3cret-token")}, exitOK, ""},
		{"token file missing", []string{"--token-file", "/nonexistent/token"}, exitUsage, "--token-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"status", "--server", srv.URL, "--consul", dead}, tc.args...)
			code, _, errs := ctl(t, args...)
			if code != tc.wantCode || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d with %q", code, errs, tc.wantCode, tc.want)
			}
			if strings.Contains(errs, "Consul") {
				t.Errorf("a 401 is an answer, yet it fell back to Consul: %s", errs)
			}
			if strings.Contains(errs, "s3cret") || strings.Contains(errs, "wrong") {
				t.Errorf("stderr shows the token: %s", errs)
			}
		})
	}
}

func TestCtlOrders(t *testing.T) {
	f, srv := newFakeAPI(t, "")
	for _, tc := range []struct {
		args      []string
		wantCode  int
		wantOut   string
		wantOrder string
	}{
		{[]string{"suspend", "web", "--reason", "db migration"}, exitOK, "web: suspended\n", "suspend web db migration"},
		{[]string{"suspend", "--reason", "first", "cache"}, exitOK, "cache: suspended\n", "suspend cache first"},
		{[]string{"resume", "web"}, exitOK, "web: resumed\n", "resume web"},
		{[]string{"retry", "db"}, exitOK, "db: held revision released; the next pass tries it again\n", "retry db"},
		{[]string{"reconcile"}, exitOK, "reconcile: a pass was started by the drover at " + srv.URL + "\n", "reconcile"},
		{[]string{"suspend", "nope"}, exitFail, "", ""},
		{[]string{"suspend"}, exitUsage, "", ""},
		{[]string{"resume", "a", "b"}, exitUsage, "", ""},
		{[]string{"reconcile", "web"}, exitUsage, "", ""},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			f.mu.Lock()
			f.orders = nil
			f.mu.Unlock()
			code, out, errs := ctl(t, append(tc.args, "--server", srv.URL)...)
			if code != tc.wantCode || out != tc.wantOut {
				t.Errorf("got exit %d stdout %q (stderr %q); want %d %q", code, out, errs, tc.wantCode, tc.wantOut)
			}
			f.mu.Lock()
			got := strings.Join(f.orders, ";")
			f.mu.Unlock()
			if got != tc.wantOrder {
				t.Errorf("server got %q, want %q", got, tc.wantOrder)
			}
		})
	}
	code, _, errs := ctl(t, "suspend", "nope", "--server", srv.URL, "--consul", deadAddr(t))
	if code != exitFail || !strings.Contains(errs, `404: unknown service "nope"`) || strings.Contains(errs, "Consul") {
		t.Errorf("unknown service: exit %d, stderr %q; want 1 naming it, no fallback", code, errs)
	}
}

func TestCtlUnreachable(t *testing.T) {
	dead := deadAddr(t)
	deadConsul := deadAddr(t)
	code, _, errs := ctl(t, "reconcile", "--server", "http://"+dead)
	if code != exitFail || !strings.Contains(errs, "no drover answered at http://"+dead) || strings.Contains(errs, "Consul") {
		t.Errorf("reconcile: exit %d, stderr %q; want 1 naming %s, no fallback", code, errs, dead)
	}
	code, _, errs = ctl(t, "status", "--server", dead, "--consul", deadConsul)
	for _, want := range []string{"no drover answered at http://" + dead, "asking Consul at " + deadConsul, "consul did not answer either"} {
		if code != exitFail || !strings.Contains(errs, want) {
			t.Errorf("status: exit %d, stderr %q; want 1 with %q", code, errs, want)
		}
	}
	code, _, errs = ctl(t, "status", "--server", "ftp://"+dead)
	if code != exitUsage || !strings.Contains(errs, "want http://host:port") {
		t.Errorf("ftp server: exit %d, stderr %q", code, errs)
	}
}

func TestCtlHistory(t *testing.T) {
	f, srv := newFakeAPI(t, "")
	f.events = []reconciler.Event{
		{Seq: 1, Time: t0, Kind: reconciler.EventRolloutStarted, Fleet: "prod", Service: "web", Revision: "1a2b3c4d5e6f", Version: "1.4.2"},
		{Seq: 2, Time: t0.Add(time.Second), Kind: reconciler.EventVMCreated, Fleet: "prod", Service: "web", VMs: []string{"web-1a2b3c4d-a1", "web-1a2b3c4d-b2"}},
		{Seq: 3, Time: t0.Add(2 * time.Second), Kind: reconciler.EventLeaderAcquired, Fleet: "prod"},
		{Seq: 4, Time: t0.Add(3 * time.Second), Kind: reconciler.EventRolloutFailed, Fleet: "prod", Service: "web", Reason: "deadline passed"},
	}
	code, out, errs := ctl(t, "history", "web", "--limit", "2", "--server", srv.URL)
	want := "TIME                  SERVICE       EVENT               REVISION  VERSION     VMS / REASON\n" +
		"2026-12-04T19:00:01Z  web           vm_created          -         -           web-1a2b3c4d-a1,web-1a2b3c4d-b2\n" +
		"2026-12-04T19:00:03Z  web           rollout_failed      -         -           deadline passed\n"
	if code != exitOK || out != want {
		t.Errorf("history web --limit 2: exit %d (stderr %q)\n got:\n%s\nwant:\n%s", code, errs, out, want)
	}
	if f.lastQuery != "limit=2&service=web" {
		t.Errorf("query: got %q", f.lastQuery)
	}
	code, out, _ = ctl(t, "history", "-o", "json", "--server", srv.URL)
	if lines := strings.Count(out, "\n"); code != exitOK || lines != 4 || !strings.Contains(out, `"kind":"leader_acquired"`) {
		t.Errorf("history -o json: exit %d, %d lines:\n%s", code, lines, out)
	}
}

// TestCtlWatch: --watch prints the history, then live events; when the stream breaks
// it reconnects asking for a replay since the last seen, each event shown once.
func TestCtlWatch(t *testing.T) {
	f, srv := newFakeAPI(t, "")
	ev := func(seq uint64) reconciler.Event {
		return reconciler.Event{Seq: seq, Time: t0.Add(time.Duration(seq) * time.Second), Kind: reconciler.EventVMCreated, Fleet: "prod", Service: "web", VMs: []string{fmt.Sprintf("vm-%d", seq)}}
	}
	sse := func(w http.ResponseWriter, e reconciler.Event) {
		raw, _ := json.Marshal(e)
		fmt.Fprintf(w, ": keep-alive\n\nevent: %s\ndata: %s\n\n", e.Kind, raw)
	}
	f.events = []reconciler.Event{ev(1), ev(2)}
	f.stream = func(n int, w http.ResponseWriter, flush func(), done <-chan struct{}) {
		switch n {
		case 1: // one live event, then 4 happens while the stream is down
			f.mu.Lock()
			f.events = append(f.events, ev(3), ev(4))
			f.mu.Unlock()
			sse(w, ev(3))
			flush()
		case 2: // after the reconnection (4 replayed by ?since=3): 3 again, then 5
			f.mu.Lock()
			f.events = append(f.events, ev(5))
			f.mu.Unlock()
			sse(w, ev(3))
			sse(w, ev(5))
			flush()
			<-done // held open: the client ends it
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &testenv.SyncBuffer{}
	var errb testenv.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runCtl(ctx, "history", []string{"--watch", "--server", srv.URL}, out, &errb)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "vm-5") {
		if time.Now().After(deadline) {
			t.Fatalf("vm-5 not shown within 20s; stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	srv.CloseClientConnections()
	if code := <-done; code != exitOK {
		t.Errorf("exit %d after Ctrl-C, want 0", code)
	}
	var seen []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n")[1:] {
		f := strings.Fields(line)
		seen = append(seen, f[len(f)-1])
	}
	if got := strings.Join(seen, " "); got != "vm-1 vm-2 vm-3 vm-4 vm-5" {
		t.Errorf("events shown: got %q, want each of vm-1…vm-5 once, in order\n%s", got, out.String())
	}
	if !strings.Contains(errb.String(), "reconnecting in") {
		t.Errorf("stderr does not tell of the reconnection: %q", errb.String())
	}
}

// BenchmarkCtlStatus is `drover status` end to end but for process start: flags, one
// request to an API over loopback with 1,000 VMs in 100 services, decoding, the table.
// The target for the whole command is 100 ms.
func BenchmarkCtlStatus(b *testing.B) {
	st := reconciler.FleetStatus{Fleet: "prod", Revision: strings.Repeat("a", 40)}
	for s := range 100 {
		svc := reconciler.ServiceStatus{Name: fmt.Sprintf("svc-%d", s), Version: "2", Phase: "rolling-out",
			Versions: []reconciler.VersionCount{{Version: "1", Passing: 5, Total: 5}, {Version: "2", Passing: 3, Total: 5}}}
		for v := range 10 {
			svc.VMs = append(svc.VMs, reconciler.VMStatus{Name: fmt.Sprintf("svc-%d-0123abcd-%d", s, v), Version: "1", Revision: st.Revision, State: "running", Address: "127.0.0.1:30000", Created: t0, Health: "passing"})
		}
		st.Services = append(st.Services, svc)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, st) }))
	b.Cleanup(srv.Close)
	var out, errb bytes.Buffer
	b.ResetTimer()
	for range b.N {
		out.Reset()
		if code := run([]string{"status", "--server", srv.URL}, &out, &errb); code != exitOK {
			b.Fatalf("exit %d: %s", code, errb.String())
		}
	}
}
