package reconciler

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drover-dev/drover/discovery"
)

// TestAwaitAnswerOverlapsHungProbes: the first probe hangs, like one sent to a guest
// behind QEMU's user networking before its network is up; the guest answers the later
// ones. awaitAnswer must not wait for the hung probe's (hour-long) timeout.
func TestAwaitAnswerOverlapsHungProbes(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			select { // hang until the test ends or the probe gives up
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	defer close(release)
	r, p, reg := probeRig(t, srv, 20*time.Millisecond, time.Hour)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if !r.awaitAnswer(ctx, p, "vm", reg) {
		t.Fatalf("awaitAnswer: gave up (%v) after %d requests; want it answered by a probe after the hung one", ctx.Err(), calls.Load())
	}
	if n := calls.Load(); n < 2 {
		t.Errorf("requests: %d, want the hung one and at least one more", n)
	}
}

// TestAwaitAnswerPacesRefusals: a guest that refuses at once gets one probe per
// ProbeInterval, not a busy loop, and awaitAnswer returns false when ctx ends, leaving
// no probe running.
func TestAwaitAnswerPacesRefusals(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	r, p, reg := probeRig(t, srv, 50*time.Millisecond, time.Second)

	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if r.awaitAnswer(ctx, p, "vm", reg) {
		t.Fatal("awaitAnswer: true for a guest answering 503")
	}
	// 500 ms at one probe per 50 ms is about 11; a busy loop makes thousands.
	if n := calls.Load(); n < 2 || n > 40 {
		t.Errorf("probes in 500ms at a 50ms interval: %d, want about 11", n)
	}
	if msg := p.lastErr["vm"]; msg == nil {
		t.Error("no last probe error recorded for the refusing VM")
	}
}

// probeRig is a Reconciler that probes with a real discovery client (Probe needs no
// Consul), fresh probe state, and the registration of a VM served by srv.
func probeRig(t *testing.T, srv *httptest.Server, interval, timeout time.Duration) (*Reconciler, *probes, discovery.Registration) {
	t.Helper()
	host, portStr, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portStr)
	client, err := discovery.New(discovery.Config{Address: "127.0.0.1:1"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{cfg: Config{Health: client, ProbeInterval: interval}}
	p := &probes{registered: map[string]bool{}, lastErr: map[string]error{}}
	reg := discovery.Registration{ID: "vm", Service: "web", Address: host, Port: port,
		Check: discovery.Check{HTTPPath: "/healthz", Interval: time.Second, Timeout: timeout}}
	return r, p, reg
}
