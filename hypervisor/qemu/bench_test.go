package qemu

import (
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"
)

// BenchmarkStartupWith20VMs is a restarted Drover's first view: New on a state
// directory holding 20 VMs, then List. Their QEMUs are not running (dead pids), which
// is also the worst case for pid checks. Target: well under 200 ms.
func BenchmarkStartupWith20VMs(b *testing.B) {
	requireQEMU(b)
	stateDir := b.TempDir()
	seed := newTestDriver(b, stateDir)
	for i := range 20 {
		fabricate(b, seed, "web-3f2a91c0-"+strconv.Itoa(i), 40200+i, deadPid(b))
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var worst time.Duration
	for b.Loop() {
		start := time.Now()
		d, err := New(b.Context(), Config{StateDir: stateDir}, log)
		if err != nil {
			b.Fatal(err)
		}
		vms, err := d.List(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		if len(vms) != 20 {
			b.Fatalf("List: want 20 vms, got %d", len(vms))
		}
		worst = max(worst, time.Since(start))
	}
	b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
	if worst > 200*time.Millisecond {
		b.Errorf("start-up with 20 vms: want a full view under 200ms, worst took %v", worst)
	}
}
