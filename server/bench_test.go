package server

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/drover-dev/drover/reconciler"
)

// bigFleet is 20 services of 50 VMs each (1,000 VMs), half of each mid-rollout.
func bigFleet() reconciler.FleetStatus {
	st := reconciler.FleetStatus{Fleet: "bench", Revision: strings.Repeat("ab", 20), Ref: "branch:main", Leader: true,
		LastFetch: t0, LastPass: t0}
	for s := range 20 {
		svc := reconciler.ServiceStatus{Name: fmt.Sprintf("svc-%02d", s), Version: "2.0.0", Revision: st.Revision,
			Replicas: 25, Phase: "rolling-out", Progress: reconciler.Progress{Passing: 10, Wanted: 25, Started: t0.Add(-time.Minute)},
			Versions: []reconciler.VersionCount{{Version: "1.0.0", Passing: 25, Total: 25}, {Version: "2.0.0", Passing: 10, Total: 25}}}
		for v := range 50 {
			version, health := "1.0.0", "passing"
			if v >= 25 {
				version = "2.0.0"
				if v >= 35 {
					health = "critical"
				}
			}
			svc.VMs = append(svc.VMs, reconciler.VMStatus{Name: fmt.Sprintf("%s-3f2a91c0-%03d", svc.Name, v), Version: version,
				Revision: st.Revision, State: "running", Address: fmt.Sprintf("127.0.0.1:%d", 20000+s*100+v),
				Created: t0.Add(-time.Duration(v) * time.Minute), Health: health})
		}
		st.Services = append(st.Services, svc)
	}
	return st
}

// benchRender renders path rounds times and reports the median and worst render.
// Target (issue 10): under 20 ms each for /metrics and / with 1,000 VMs.
func benchRender(b *testing.B, path, mustContain string) {
	f := newFixture(b, nil)
	f.view.update(func(st *reconciler.FleetStatus) { *st = bigFleet() })
	h := f.srv.Handler()
	const rounds = 50
	var times []time.Duration
	var size int
	for b.Loop() {
		times = times[:0]
		for range rounds {
			req := httptest.NewRequest("GET", path, nil)
			req.Host = "127.0.0.1:7070"
			w := httptest.NewRecorder()
			start := time.Now()
			h.ServeHTTP(w, req)
			times = append(times, time.Since(start))
			if w.Code != 200 || !strings.Contains(w.Body.String(), mustContain) {
				b.Fatalf("GET %s: %d, body without %q", path, w.Code, mustContain)
			}
			size = w.Body.Len()
		}
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1e3, "ms-p50")
	b.ReportMetric(float64(times[len(times)-1].Microseconds())/1e3, "ms-max")
	b.ReportMetric(float64(size)/1024, "KiB")
}

func BenchmarkMetrics1000VMs(b *testing.B) {
	benchRender(b, "/metrics", `drover_vms{service="svc-19",state="running",version="2.0.0"} 25`)
}

func BenchmarkDashboard1000VMs(b *testing.B) {
	benchRender(b, "/", "svc-19-3f2a91c0-049")
}

// BenchmarkEventToSSE: from View publishing an event to a stream client on
// 127.0.0.1 having read it. Target (issue 10): within 200 ms.
func BenchmarkEventToSSE(b *testing.B) {
	f := newFixture(b, nil)
	ts := httptest.NewServer(f.srv.Handler())
	b.Cleanup(ts.Close)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/api/v1/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { resp.Body.Close() })
	f.view.waitSubscribers(b, 1)
	got := make(chan time.Time, 1)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") {
				got <- time.Now()
			}
		}
	}()
	const rounds = 200
	var lat []time.Duration
	for b.Loop() {
		lat = lat[:0]
		for range rounds {
			start := time.Now()
			f.view.publish(reconciler.Event{Kind: reconciler.EventVMCreated, Service: "web", VMs: []string{"web-1"}})
			select {
			case at := <-got:
				lat = append(lat, at.Sub(start))
			case <-time.After(10 * time.Second):
				b.Fatal("event not received within 10s")
			}
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1e3, "ms-p50")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1e3, "ms-p99")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1e3, "ms-max")
}
