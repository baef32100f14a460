package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/drover-dev/drover/testenv"
)

// Consul runs HTTP and TCP checks at most once a second, so the tests use that.
const checkInterval = time.Second

type tLog struct{ t testing.TB }

func (w tLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tLog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newTestClient starts a fresh agent and, at cleanup, asserts that the test left
// nothing registered in the agent or the catalog.
func newTestClient(t *testing.T) (*Client, *testenv.ConsulAgent) {
	t.Helper()
	agent := testenv.Consul(t)
	c, err := New(Config{Address: agent.Addr}, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { assertClean(t, c, agent) })
	return c, agent
}

func assertClean(t *testing.T, c *Client, agent *testenv.ConsulAgent) {
	t.Helper()
	if !agent.Running() {
		return // the test stopped it on purpose: its state is gone with it
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	local, err := c.api.Agent().ServicesWithFilterOpts("", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		t.Errorf("cleanup: list agent services: %v", err)
		return
	}
	for id := range local {
		t.Errorf("cleanup: instance %s still registered on the agent", id)
	}
	// The agent syncs deregistrations to the catalog asynchronously: follow the
	// catalog with blocking queries until only Consul's own service is left.
	var index uint64
	for {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: time.Second}).WithContext(ctx)
		services, meta, err := c.api.Catalog().Services(q)
		if err != nil {
			t.Errorf("cleanup: catalog still holds services %v: %v", services, err)
			return
		}
		delete(services, "consul")
		if len(services) == 0 {
			return
		}
		index = meta.LastIndex
	}
}

// healthServer is an HTTP health endpoint on 127.0.0.1 whose status the test flips.
type healthServer struct {
	*httptest.Server
	status atomic.Int32
}

func newHealthServer(t *testing.T, status int) *healthServer {
	t.Helper()
	h := &healthServer{}
	h.status.Store(int32(status))
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(int(h.status.Load()))
		w.Write([]byte("status " + strconv.Itoa(int(h.status.Load()))))
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *healthServer) port(t *testing.T) int {
	t.Helper()
	return h.Listener.Addr().(*net.TCPAddr).Port
}

func httpRegistration(t *testing.T, id, service string, h *healthServer) Registration {
	return Registration{
		ID: id, Service: service, Address: "127.0.0.1", Port: h.port(t),
		Tags:  []string{"drover"},
		Meta:  map[string]string{"version": "1.0", "revision": "abc123", "spec_hash": "deadbeef"},
		Check: Check{HTTPPath: "/healthz", Interval: checkInterval, Timeout: time.Second, DeregisterCriticalAfter: time.Minute},
	}
}

func register(t *testing.T, c *Client, r Registration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Register(ctx, r); err != nil {
		t.Fatalf("Register %s: %v", r.ID, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Deregister(ctx, r.ID); err != nil && !errors.Is(err, ErrUnavailable) {
			t.Errorf("Deregister %s: %v", r.ID, err)
		}
	})
}

// waitFor polls cond until it holds or the deadline passes; for conditions the package
// has no blocking call for.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last state: %s", what, timeout, state)
		}
		<-tick.C
	}
}

func instanceStatus(t *testing.T, c *Client, id string) (Status, string) {
	t.Helper()
	insts, err := c.Instances(context.Background(), "drover")
	if err != nil {
		t.Fatalf("Instances: %v", err)
	}
	for _, in := range insts {
		if in.ID == id {
			return in.Status, in.Output
		}
	}
	return "", "not listed"
}

func TestNewRejectsBadAddress(t *testing.T) {
	for _, addr := range []string{"127.0.0.1", "http://127.0.0.1:8500", "::1"} {
		if _, err := New(Config{Address: addr}, testLogger(t)); err == nil {
			t.Errorf("New(%q): want error, got nil", addr)
		}
	}
	c, err := New(Config{Address: "127.0.0.1:8500"}, testLogger(t))
	if err != nil {
		t.Fatalf("New(127.0.0.1:8500): %v", err)
	}
	if c.addr != "127.0.0.1:8500" || c.timeout != DefaultCallTimeout || c.maxWait >= c.timeout {
		t.Errorf("New: want address 127.0.0.1:8500, timeout %s and a shorter wait, got %s, %s, %s",
			DefaultCallTimeout, c.addr, c.timeout, c.maxWait)
	}
	if _, err := New(Config{Address: "127.0.0.1:8500", CallTimeout: time.Millisecond}, testLogger(t)); err == nil ||
		!strings.Contains(err.Error(), "call timeout 1ms") {
		t.Errorf("New with a 1ms call timeout: want an error naming it, got %v", err)
	}
}

func TestRegisterRejectsBadInput(t *testing.T) {
	c, err := New(Config{Address: "127.0.0.1:1"}, testLogger(t)) // never contacted
	if err != nil {
		t.Fatal(err)
	}
	good := Registration{ID: "web-1", Service: "web", Address: "127.0.0.1", Port: 8080,
		Check: Check{HTTPPath: "/healthz", Interval: time.Second}}
	tests := []struct {
		name    string
		mutate  func(*Registration)
		wantErr string
	}{
		{"no id", func(r *Registration) { r.ID = "" }, "empty ID"},
		{"no service", func(r *Registration) { r.Service = "" }, "empty service name"},
		{"no address", func(r *Registration) { r.Address = "" }, "empty address"},
		{"port zero", func(r *Registration) { r.Port = 0 }, "port 0 out of range"},
		{"port too big", func(r *Registration) { r.Port = 70000 }, "port 70000 out of range"},
		{"no check", func(r *Registration) { r.Check.HTTPPath = "" }, "no check"},
		{"both checks", func(r *Registration) { r.Check.TCP = true }, "both HTTPPath and TCP"},
		{"relative path", func(r *Registration) { r.Check.HTTPPath = "healthz" }, "does not start with /"},
		{"no interval", func(r *Registration) { r.Check.Interval = 0 }, "interval 0s: must be positive"},
		{"negative timeout", func(r *Registration) { r.Check.Timeout = -time.Second }, "timeout -1s"},
		{"negative deregister", func(r *Registration) { r.Check.DeregisterCriticalAfter = -time.Second }, "deregister-critical-after -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := good
			tt.mutate(&r)
			err := c.Register(context.Background(), r)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("want error containing %q, got %v", tt.wantErr, err)
			}
			if errors.Is(err, ErrUnavailable) {
				t.Errorf("invalid input must fail before contacting Consul, got %v", err)
			}
		})
	}
}

func TestAgentRegistration(t *testing.T) {
	tests := []struct {
		name      string
		check     Check
		wantHTTP  string
		wantTCP   string
		wantDereg string
	}{
		{"http", Check{HTTPPath: "/healthz", Interval: time.Second, DeregisterCriticalAfter: 2 * time.Minute}, "http://10.0.0.5:8080/healthz", "", "2m0s"},
		{"tcp", Check{TCP: true, Interval: time.Second}, "", "10.0.0.5:8080", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Registration{ID: "web-1", Service: "web", Address: "10.0.0.5", Port: 8080, Check: tt.check}
			got := r.agentRegistration().Check
			if got.HTTP != tt.wantHTTP || got.TCP != tt.wantTCP || got.DeregisterCriticalServiceAfter != tt.wantDereg {
				t.Errorf("want HTTP %q TCP %q dereg %q, got HTTP %q TCP %q dereg %q",
					tt.wantHTTP, tt.wantTCP, tt.wantDereg, got.HTTP, got.TCP, got.DeregisterCriticalServiceAfter)
			}
			if got.Status != api.HealthCritical {
				t.Errorf("initial status: want %s, got %q", api.HealthCritical, got.Status)
			}
		})
	}
}

func TestAggregate(t *testing.T) {
	chk := func(id, status, output string) *api.HealthCheck {
		return &api.HealthCheck{CheckID: id, Status: status, Output: output, Notes: "notes of " + id}
	}
	tests := []struct {
		name       string
		checks     []*api.HealthCheck
		wantStatus Status
		wantOutput string
	}{
		{"no checks", nil, StatusPassing, ""},
		{"passing", []*api.HealthCheck{chk("serfHealth", "passing", "ok"), chk("service:a", "passing", "200")}, StatusPassing, ""},
		{"worst wins", []*api.HealthCheck{chk("a", "warning", "slow"), chk("b", "critical", "500"), chk("c", "passing", "")}, StatusCritical, "500"},
		{"warning", []*api.HealthCheck{chk("a", "passing", ""), chk("b", "warning", "slow")}, StatusWarning, "slow"},
		{"service maintenance", []*api.HealthCheck{chk("b", "critical", "500"), chk(api.ServiceMaintPrefix+"a", "critical", "")}, StatusMaintenance, "notes of " + api.ServiceMaintPrefix + "a"},
		{"node maintenance", []*api.HealthCheck{chk(api.NodeMaint, "critical", "")}, StatusMaintenance, "notes of " + api.NodeMaint},
		{"unknown status", []*api.HealthCheck{chk("a", "bogus", "?")}, StatusCritical, "?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, output := aggregate(tt.checks)
			if status != tt.wantStatus || output != tt.wantOutput {
				t.Errorf("want (%s, %q), got (%s, %q)", tt.wantStatus, tt.wantOutput, status, output)
			}
		})
	}
}

func TestPing(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	if err := c.Ping(context.Background()); err != nil {
		t.Fatalf("Ping running agent: %v", err)
	}
}

func TestRegisterStartsCritical(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	h := newHealthServer(t, http.StatusOK)
	r := httpRegistration(t, "web-crit", "web", h)
	// Consul first runs a check at a random point within its interval: with an hour,
	// the state read below is the registered one, not a check result.
	r.Check.Interval = time.Hour
	register(t, c, r)
	if status, output := instanceStatus(t, c, r.ID); status != StatusCritical {
		t.Errorf("status right after Register: want %s, got %s (%s)", StatusCritical, status, output)
	}
	n, err := c.PassingCount(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("PassingCount right after Register: want 0, got %d", n)
	}
}

func TestWaitPassingHTTP(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	h := newHealthServer(t, http.StatusOK)
	r := httpRegistration(t, "web-1", "web", h)
	register(t, c, r)

	const hold = 1500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	if err := c.WaitPassing(ctx, "web", []string{r.ID}, hold); err != nil {
		t.Fatalf("WaitPassing: %v", err)
	}
	if elapsed := time.Since(start); elapsed < hold {
		t.Errorf("WaitPassing returned after %s: want at least the hold %s", elapsed, hold)
	}
	if status, output := instanceStatus(t, c, r.ID); status != StatusPassing {
		t.Errorf("status after WaitPassing: want %s, got %s (%s)", StatusPassing, status, output)
	}
	if n, err := c.PassingCount(ctx, "web"); err != nil || n != 1 {
		t.Errorf("PassingCount: want 1, got %d (err %v)", n, err)
	}

	// Registering the same ID again replaces it rather than adding a second instance.
	register(t, c, r)
	insts, err := c.Instances(ctx, "drover")
	if err != nil {
		t.Fatal(err)
	}
	if len(insts) != 1 {
		t.Errorf("instances after re-registering %s: want 1, got %+v", r.ID, insts)
	}
}

func TestWaitPassingTimesOutNamingFailingInstances(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	good := newHealthServer(t, http.StatusOK)
	bad := newHealthServer(t, http.StatusInternalServerError)
	register(t, c, httpRegistration(t, "web-good", "web", good))
	register(t, c, httpRegistration(t, "web-bad", "web", bad))

	// Let the failing check run at least once so its output is in the error.
	waitFor(t, 10*time.Second, "web-bad checked", func() (bool, string) {
		s, out := instanceStatus(t, c, "web-bad")
		return strings.Contains(out, "500"), string(s) + " " + out
	})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := c.WaitPassing(ctx, "web", []string{"web-good", "web-bad", "web-missing"}, 0)
	if err == nil {
		t.Fatal("WaitPassing with a failing instance: want error, got nil")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("want error wrapping context.DeadlineExceeded, got %v", err)
	}
	if errors.Is(err, ErrUnavailable) {
		t.Errorf("a timeout is not Consul being down: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"web-bad critical", "500", "web-missing critical: not registered"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error should contain %q, got %v", want, err)
		}
	}
	if strings.Contains(msg, "web-good") {
		t.Errorf("error names the passing instance web-good: %v", err)
	}
}

func TestWaitPassingRestartsHoldWhenInstanceFlaps(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	h := newHealthServer(t, http.StatusOK)
	r := httpRegistration(t, "web-flap", "web", h)
	register(t, c, r)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitPassing(ctx, "web", []string{r.ID}, 0); err != nil {
		t.Fatalf("first passing: %v", err)
	}

	// Long enough that, had the flap been missed, WaitPassing would return well before
	// recovery + hold.
	const hold = 4 * time.Second
	done := make(chan error, 1)
	go func() { done <- c.WaitPassing(ctx, "web", []string{r.ID}, hold) }()

	// Watched in the catalog, which WaitPassing follows, rather than on the agent: the
	// flap must have reached what clients see.
	passingCount := func(want int) func() (bool, string) {
		return func() (bool, string) {
			n, err := c.PassingCount(ctx, "web")
			return err == nil && n == want, fmt.Sprintf("count %d, err %v", n, err)
		}
	}
	h.status.Store(http.StatusInternalServerError)
	waitFor(t, 5*time.Second, "instance critical in the catalog", passingCount(0))
	h.status.Store(http.StatusOK)
	waitFor(t, 5*time.Second, "instance passing again in the catalog", passingCount(1))
	recovered := time.Now()

	if err := <-done; err != nil {
		t.Fatalf("WaitPassing after flap: %v", err)
	}
	// The recovery was seen by polling up to 20ms late and the catalog can only see
	// it after the agent: allow that much slack.
	if got, min := time.Since(recovered), hold-100*time.Millisecond; got < min {
		t.Errorf("WaitPassing returned %s after recovery: want at least %s (hold restarted)", got, min)
	}
}

func TestWaitPassingTCP(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	r := Registration{ID: "db-1", Service: "db", Address: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port,
		Tags: []string{"drover"}, Check: Check{TCP: true, Interval: checkInterval, Timeout: time.Second}}
	register(t, c, r)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := c.WaitPassing(ctx, "db", []string{r.ID}, 500*time.Millisecond); err != nil {
		t.Fatalf("WaitPassing TCP: %v", err)
	}

	ln.Close()
	waitFor(t, 5*time.Second, "TCP check critical after the listener closed", func() (bool, string) {
		s, out := instanceStatus(t, c, r.ID)
		return s == StatusCritical, string(s) + " " + out
	})
	// The agent syncs the new status to the catalog asynchronously.
	waitFor(t, 5*time.Second, "no passing db in the catalog", func() (bool, string) {
		n, err := c.PassingCount(ctx, "db")
		return err == nil && n == 0, fmt.Sprintf("count %d, err %v", n, err)
	})
}

func TestMaintenanceDrainsAndRestores(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	h1, h2 := newHealthServer(t, http.StatusOK), newHealthServer(t, http.StatusOK)
	register(t, c, httpRegistration(t, "web-a", "web", h1))
	register(t, c, httpRegistration(t, "web-b", "web", h2))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.WaitPassing(ctx, "web", []string{"web-a", "web-b"}, 0); err != nil {
		t.Fatal(err)
	}
	passing := func(want int) func() (bool, string) {
		return func() (bool, string) {
			n, err := c.PassingCount(ctx, "web")
			return err == nil && n == want, "count " + strconv.Itoa(n)
		}
	}
	waitFor(t, 5*time.Second, "2 passing", passing(2))

	if err := c.SetMaintenance(ctx, "web-a", true, "drover: draining for rev abc123"); err != nil {
		t.Fatalf("SetMaintenance on: %v", err)
	}
	waitFor(t, 5*time.Second, "1 passing while web-a is in maintenance", passing(1))
	status, output := instanceStatus(t, c, "web-a")
	if status != StatusMaintenance || !strings.Contains(output, "draining for rev abc123") {
		t.Errorf("web-a in maintenance: want (%s, reason), got (%s, %q)", StatusMaintenance, status, output)
	}
	// Maintenance on again is harmless.
	if err := c.SetMaintenance(ctx, "web-a", true, "again"); err != nil {
		t.Errorf("SetMaintenance on twice: %v", err)
	}

	if err := c.SetMaintenance(ctx, "web-a", false, ""); err != nil {
		t.Fatalf("SetMaintenance off: %v", err)
	}
	if err := c.WaitPassing(ctx, "web", []string{"web-a"}, 0); err != nil {
		t.Fatalf("WaitPassing after maintenance off: %v", err)
	}
	waitFor(t, 5*time.Second, "2 passing after maintenance off", passing(2))
}

func TestSetMaintenanceUnknownInstance(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	err := c.SetMaintenance(context.Background(), "web-nope", true, "x")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "web-nope") {
		t.Errorf("want ErrNotFound naming web-nope, got %v", err)
	}
	if err := c.SetMaintenance(context.Background(), "", true, "x"); err == nil {
		t.Error("SetMaintenance with empty ID: want error, got nil")
	}
}

func TestDeregister(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	h := newHealthServer(t, http.StatusOK)
	r := httpRegistration(t, "web-gone", "web", h)
	register(t, c, r)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := c.WaitPassing(ctx, "web", []string{r.ID}, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Deregister(ctx, r.ID); err != nil {
		t.Fatalf("Deregister: %v", err)
	}
	if s, _ := instanceStatus(t, c, r.ID); s != "" {
		t.Errorf("after Deregister, Instances still lists %s (%s)", r.ID, s)
	}
	waitFor(t, 5*time.Second, "no passing instance after Deregister", func() (bool, string) {
		n, err := c.PassingCount(ctx, "web")
		return err == nil && n == 0, "count " + strconv.Itoa(n)
	})
	if err := c.Deregister(ctx, r.ID); err != nil {
		t.Errorf("Deregister an unknown ID: want nil, got %v", err)
	}
	if err := c.Deregister(ctx, ""); err == nil {
		t.Error("Deregister empty ID: want error, got nil")
	}
}

func TestInstancesFiltersByTagWithStatusAndMeta(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	ok, failing := newHealthServer(t, http.StatusOK), newHealthServer(t, http.StatusServiceUnavailable)
	a := httpRegistration(t, "web-ok", "web", ok)
	b := httpRegistration(t, "api-failing", "api", failing)
	b.Meta = map[string]string{"version": "2.0"}
	other := httpRegistration(t, "other-1", "other", ok)
	other.Tags = []string{"not-drover"}
	for _, r := range []Registration{a, b, other} {
		register(t, c, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := c.WaitPassing(ctx, "web", []string{a.ID}, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "api-failing checked", func() (bool, string) {
		s, out := instanceStatus(t, c, b.ID)
		return strings.Contains(out, "503"), string(s) + " " + out
	})

	got, err := c.Instances(ctx, "drover")
	if err != nil {
		t.Fatal(err)
	}
	want := []Instance{
		{ID: "api-failing", Service: "api", Address: "127.0.0.1", Port: failing.port(t), Status: StatusCritical, Meta: b.Meta},
		{ID: "web-ok", Service: "web", Address: "127.0.0.1", Port: ok.port(t), Status: StatusPassing, Meta: a.Meta},
	}
	if len(got) != len(want) {
		t.Fatalf("Instances(drover): want %d instances, got %+v", len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.Service != w.Service || g.Address != w.Address || g.Port != w.Port || g.Status != w.Status {
			t.Errorf("instance %d: want %s/%s %s:%d %s, got %s/%s %s:%d %s", i,
				w.Service, w.ID, w.Address, w.Port, w.Status, g.Service, g.ID, g.Address, g.Port, g.Status)
		}
		for k, v := range w.Meta {
			if g.Meta[k] != v {
				t.Errorf("instance %s meta %s: want %q, got %q", g.ID, k, v, g.Meta[k])
			}
		}
	}
	if !strings.Contains(got[0].Output, "503") {
		t.Errorf("failing instance output: want the check's 503, got %q", got[0].Output)
	}
	if got[1].Output != "" {
		t.Errorf("passing instance output: want empty, got %q", got[1].Output)
	}

	none, err := c.Instances(ctx, "no-such-tag")
	if err != nil || len(none) != 0 {
		t.Errorf("Instances(no-such-tag): want none, got %+v (err %v)", none, err)
	}
	if _, err := c.Instances(ctx, ""); err == nil {
		t.Error("Instances with empty tag: want error, got nil")
	}
}

// blackhole is a TCP listener on 127.0.0.1 that accepts connections and never
// answers, as a hung agent or a proxy in front of a dead one does.
func blackhole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, conn) // held open, never read or written
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// TestConsulDown covers every call against an address nothing listens on, against an
// agent that was stopped, and against one that accepts connections and never
// answers: each must say Consul is unavailable and name the address, and return on
// its own (CallTimeout), never waiting for the caller's deadline.
func TestConsulDown(t *testing.T) {
	t.Parallel()
	unused, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unusedAddr := unused.Addr().String()
	unused.Close() // now nothing listens there

	stopped := testenv.Consul(t)
	if err := stopped.Stop(); err != nil {
		t.Fatal(err)
	}

	reg := Registration{ID: "web-1", Service: "web", Address: "127.0.0.1", Port: 8080,
		Check: Check{HTTPPath: "/healthz", Interval: time.Second}}
	calls := []struct {
		name string
		call func(context.Context, *Client) error
	}{
		{"Ping", func(ctx context.Context, c *Client) error { return c.Ping(ctx) }},
		{"Register", func(ctx context.Context, c *Client) error { return c.Register(ctx, reg) }},
		{"Deregister", func(ctx context.Context, c *Client) error { return c.Deregister(ctx, "web-1") }},
		{"SetMaintenance", func(ctx context.Context, c *Client) error { return c.SetMaintenance(ctx, "web-1", true, "x") }},
		{"Instances", func(ctx context.Context, c *Client) error { _, err := c.Instances(ctx, "drover"); return err }},
		{"PassingCount", func(ctx context.Context, c *Client) error { _, err := c.PassingCount(ctx, "web"); return err }},
		{"WaitPassing", func(ctx context.Context, c *Client) error {
			return c.WaitPassing(ctx, "web", []string{"web-1"}, 0)
		}},
		{"KVPut", func(ctx context.Context, c *Client) error { return c.KVPut(ctx, "drover/x", []byte("1")) }},
		{"KVList", func(ctx context.Context, c *Client) error { _, err := c.KVList(ctx, "drover/"); return err }},
		{"ServiceInstances", func(ctx context.Context, c *Client) error { _, err := c.ServiceInstances(ctx, "web"); return err }},
		{"Lead", func(ctx context.Context, c *Client) error {
			l, err := c.Lead(ctx, testKey, LeaderOptions{})
			if l != nil {
				t.Errorf("Lead returned a leadership with Consul down")
			}
			return err
		}},
	}
	// Without CallTimeout the never-answering agent would hold each call until the
	// caller's deadline (the old behaviour), and this test would fail on ctx.Err().
	const callTimeout = 500 * time.Millisecond
	for _, addr := range []struct{ name, addr string }{
		{"unused port", unusedAddr}, {"stopped agent", stopped.Addr}, {"never answers", blackhole(t)},
	} {
		c, err := New(Config{Address: addr.addr, CallTimeout: callTimeout}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range calls {
			t.Run(addr.name+"/"+tt.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				err := tt.call(ctx, c)
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("want ErrUnavailable, got %v", err)
				}
				if !strings.Contains(err.Error(), addr.addr) {
					t.Errorf("error should name %s, got %v", addr.addr, err)
				}
				if ctx.Err() != nil {
					t.Errorf("call waited for its deadline instead of failing fast: %v", err)
				}
			})
		}
	}
}

func TestCallsHonourCancelledContext(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Ping(ctx); !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Errorf("Ping with cancelled ctx: want context.Canceled and not ErrUnavailable, got %v", err)
	}
	err := c.WaitPassing(ctx, "web", []string{"web-1"}, 0)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "web-1") {
		t.Errorf("WaitPassing with cancelled ctx: want context.Canceled naming web-1, got %v", err)
	}
	if err := c.WaitPassing(context.Background(), "web", nil, time.Hour); err != nil {
		t.Errorf("WaitPassing with no ids: want nil, got %v", err)
	}
	if err := c.WaitPassing(context.Background(), "", []string{"x"}, 0); err == nil {
		t.Error("WaitPassing with empty service: want error, got nil")
	}
}
