package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/testenv"
)

func scrape(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return string(body)
}

// serveFixture serves f on 127.0.0.1 with Serve, as cmd will, so events reach the
// metrics through Run.
func serveFixture(t testing.TB, f *fixture) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// TestMetricsPromtool: a real scrape, with every series filled in, passes
// `promtool check metrics` (names, units, suffixes, help), and shows the values put in.
func TestMetricsPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Unavailable(t, "promtool not installed (Debian package prometheus)")
	}
	f := newFixture(t, nil)
	url := serveFixture(t, f)
	f.view.waitSubscribers(t, 1) // Run follows events

	m := f.srv.Metrics()
	m.ObservePass(7*time.Millisecond, nil)
	m.ObservePass(2*time.Second, errors.New("consul down"))
	m.ObserveGateWait("api", 4500*time.Millisecond, true)
	m.ObserveGateWait("db", 2*time.Minute, false)
	m.ObserveGitFetch(345, nil)
	m.ObserveGitFetch(0, errors.New("unreachable"))
	m.ObserveImageDownload(10<<20, nil)
	m.ObserveImageDownload(512, errors.New("checksum mismatch"))
	f.view.publish(reconciler.Event{Kind: reconciler.EventRolloutSucceeded, Service: "web"})
	f.view.publish(reconciler.Event{Kind: reconciler.EventRolloutFailed, Service: "db"})
	f.view.publish(reconciler.Event{Kind: reconciler.EventRolledBack, Service: "db"})

	want := []string{
		`drover_rollouts_total{result="succeeded",service="web"} 1`,
		`drover_rollouts_total{result="failed",service="db"} 1`,
		`drover_rollbacks_total{service="db"} 1`,
		`drover_events_total{kind="rolled_back"} 1`,
		`drover_pass_duration_seconds_count{result="ok"} 1`,
		`drover_pass_duration_seconds_count{result="error"} 1`,
		`drover_health_gate_wait_seconds_sum{result="passed",service="api"} 4.5`,
		`drover_health_gate_wait_seconds_count{result="failed",service="db"} 1`,
		`drover_git_fetch_bytes_total 345`,
		`drover_git_fetch_errors_total 1`,
		`drover_image_download_bytes_total 1.0486272e+07`,
		`drover_image_download_errors_total 1`,
		`drover_status_up 1`,
		`drover_leader 1`,
		`drover_last_successful_fetch_timestamp_seconds 1.796385597e+09`,
		`drover_last_successful_pass_timestamp_seconds 1.796385598e+09`,
		`drover_fleet_info{fleet="demo",ref="branch:main",revision="a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",tag=""} 1`,
		`drover_service_replicas_desired{service="api"} 2`,
		`drover_service_phase{phase="rolling-out",service="api"} 1`,
		`drover_service_phase{phase="converged",service="api"} 0`,
		`drover_service_revision_held{service="db"} 1`,
		`drover_service_revision_held{service="web"} 0`,
		`drover_service_suspended{service="cache"} 1`,
		`drover_rollout_vms_passing{service="api"} 1`,
		`drover_rollout_vms_wanted{service="api"} 2`,
		`drover_vms{service="api",state="running",version="1.9.0"} 2`,
		`drover_vms{service="db",state="running",version="0.9"} 1`,
		`drover_instances{service="api",version="2.0.0"} 2`,
		`drover_instances_passing{service="api",version="2.0.0"} 1`,
	}
	var body string
	waitFor(t, 10*time.Second, "the events in the metrics", func() bool {
		body = scrape(t, url)
		return strings.Contains(body, `drover_rollbacks_total{service="db"} 1`)
	})
	for _, w := range want {
		if !strings.Contains(body, w+"\n") {
			t.Errorf("scrape lacks %s", w)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", body)
	}

	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || out.Len() != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out.String())
	}
}

// TestPromtoolCatchesBadNames proves the promtool check above can fail: a counter
// without _total and a non-base unit are reported.
func TestPromtoolCatchesBadNames(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Unavailable(t, "promtool not installed (Debian package prometheus)")
	}
	bad := "# HELP drover_pass_milliseconds Bad.\n# TYPE drover_pass_milliseconds counter\ndrover_pass_milliseconds 1\n"
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(bad)
	out, err := cmd.CombinedOutput()
	if err == nil && len(out) == 0 {
		t.Errorf("promtool check metrics passed %q", bad)
	}
}

// TestMetricsFollowTheView: series read from the View move with the fleet.
func TestMetricsFollowTheView(t *testing.T) {
	f := newFixture(t, nil)
	ts := httptest.NewServer(f.srv.Handler())
	t.Cleanup(ts.Close)
	if body := scrape(t, ts.URL); !strings.Contains(body, `drover_rollout_vms_passing{service="api"} 1`+"\n") {
		t.Fatalf("before: no api progress 1 in\n%s", body)
	}
	f.view.update(func(st *reconciler.FleetStatus) {
		st.Leader = false
		st.Services[1].Progress.Passing = 2
		st.Services = st.Services[:2]
	})
	body := scrape(t, ts.URL)
	for _, w := range []string{`drover_rollout_vms_passing{service="api"} 2`, `drover_leader 0`} {
		if !strings.Contains(body, w+"\n") {
			t.Errorf("after: scrape lacks %s", w)
		}
	}
	if strings.Contains(body, `service="db"`) {
		t.Errorf("after db left the fleet, its series remain")
	}
}

// TestMetricsMadeFirst: Metrics made before the server (as cmd must, for the
// reconciler to report into) are the ones it serves.
func TestMetricsMadeFirst(t *testing.T) {
	m := NewMetrics()
	m.ObserveGitFetch(1234, nil)
	f := newFixture(t, func(c *Config) { c.Metrics = m })
	if f.srv.Metrics() != m {
		t.Fatal("Server.Metrics is not Config.Metrics")
	}
	if body := f.do("GET", "/metrics", "").Body.String(); !strings.Contains(body, "drover_git_fetch_bytes_total 1234\n") {
		t.Errorf("scrape lacks what was observed before New:\n%s", body)
	}
}
