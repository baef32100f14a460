package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor/libvirt"
	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/sources"
	"github.com/drover-dev/drover/testenv"
)

type noImages struct{}

func (noImages) Get(ctx context.Context, a sources.Artifact) (string, error) {
	return "", io.ErrUnexpectedEOF
}

// TestWiringRealOperator: the server over the reconciler's own Operator, with events
// and suspensions kept in a real Consul agent and VMs listed by libvirt's test driver.
// An order through the API is stored in Consul, comes back as an event on the
// stream, and shows in the status, the history, the metrics and the dashboard.
func TestWiringRealOperator(t *testing.T) {
	agent := testenv.Consul(t)
	log := slog.New(slog.DiscardHandler)
	dc, err := discovery.New(discovery.Config{Address: agent.Addr}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hv, err := libvirt.New(ctx, libvirt.Config{URI: "test:///default", StateDir: t.TempDir()}, log)
	if err != nil {
		testenv.Unavailable(t, "libvirt test driver: %v", err)
	}
	rec, err := reconciler.New(reconciler.Config{Fleet: "wire", Hypervisor: hv, Registrar: dc, Health: dc,
		Images: noImages{}, Failures: dc, Events: dc, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	op := &reconciler.Operator{Reconciler: rec}
	srv, err := New(Config{View: op, Control: op, Listen: "127.0.0.1:0", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{srv: srv}
	url := serveFixture(t, fx)

	stream := openStream(t, url+"/api/v1/events?service=web")
	// Without a Runner the Operator takes any valid name (the fleet is not known).
	resp, err := http.Post(url+"/api/v1/services/web/suspend", "application/json", strings.NewReader(`{"reason":"wiring test"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	t.Logf("suspend: %d %s", resp.StatusCode, body)

	fr := stream.next(t)
	e := fr.decode(t)
	if fr.event != "suspended" || e.Service != "web" || e.Reason != "wiring test" || e.Fleet != "wire" {
		t.Errorf("stream: got %s %+v, want a suspended event for web with the reason", fr.event, e)
	}
	var hist []reconciler.Event
	getJSON(t, url+"/api/v1/history?service=web", &hist)
	if len(hist) == 0 || hist[len(hist)-1].Kind != reconciler.EventSuspended {
		t.Errorf("history: got %+v, want the suspension last (read back from Consul)", hist)
	}
	var st reconciler.FleetStatus
	getJSON(t, url+"/api/v1/status", &st)
	t.Logf("status: %+v", st)
	m := scrape(t, url)
	if !strings.Contains(m, `drover_events_total{kind="suspended"} 1`) || !strings.Contains(m, "drover_status_up 1") {
		t.Errorf("metrics lack the suspension or the status:\n%s", m)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
