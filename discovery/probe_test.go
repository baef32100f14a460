package discovery

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestProbe(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	ok := newHealthServer(t, http.StatusOK)
	failing := newHealthServer(t, http.StatusServiceUnavailable)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	// A listener that accepts but never answers: the probe must give up at the timeout.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	silentPort := silent.Addr().(*net.TCPAddr).Port

	tests := []struct {
		name    string
		reg     Registration
		wantErr string
	}{
		{"http 200 passes", httpRegistration(t, "a", "web", ok), ""},
		{"http 503 fails", httpRegistration(t, "b", "web", failing), "503"},
		{"http to closed port fails", Registration{ID: "c", Address: "127.0.0.1", Port: closedPort,
			Check: Check{HTTPPath: "/healthz", Interval: time.Second, Timeout: time.Second}}, "connection refused"},
		{"http timeout", Registration{ID: "d", Address: "127.0.0.1", Port: silentPort,
			Check: Check{HTTPPath: "/healthz", Interval: time.Second, Timeout: 200 * time.Millisecond}}, "deadline"},
		{"tcp open passes", Registration{ID: "e", Address: "127.0.0.1", Port: ok.port(t),
			Check: Check{TCP: true, Interval: time.Second}}, ""},
		{"tcp closed fails", Registration{ID: "f", Address: "127.0.0.1", Port: closedPort,
			Check: Check{TCP: true, Interval: time.Second}}, "connection refused"},
	}
	for _, tt := range tests {
		err := c.Probe(context.Background(), tt.reg)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: got %v, want nil", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestRegisterPassingStartsPassing(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	h := newHealthServer(t, http.StatusOK)
	r := httpRegistration(t, "web-pass", "web", h)
	r.Check.Interval = time.Hour // the state read below is the registered one
	r.Passing = true
	register(t, c, r)
	if status, output := instanceStatus(t, c, r.ID); status != StatusPassing {
		t.Errorf("status right after Register with Passing: want %s, got %s (%s)", StatusPassing, status, output)
	}
}

// TestRegisterAgainKeepsCheckStatus pins down the Consul behaviour the reconciler is
// built around: registering an existing instance again keeps its check's status, so
// Passing only means something on an instance's first registration.
func TestRegisterAgainKeepsCheckStatus(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	h := newHealthServer(t, http.StatusOK)
	r := httpRegistration(t, "web-again", "web", h)
	r.Check.Interval = time.Hour // no check run changes the status under the test
	register(t, c, r)
	r.Passing = true
	register(t, c, r)
	if status, output := instanceStatus(t, c, r.ID); status != StatusCritical {
		t.Errorf("status after registering a critical instance again with Passing: want %s (Consul keeps it), got %s (%s)", StatusCritical, status, output)
	}
}
