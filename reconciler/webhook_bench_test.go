package reconciler

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/sources"
	"github.com/drover-dev/drover/testenv"
	"github.com/drover-dev/drover/webhook"
)

// createClock is the fake hypervisor, noting when each Create starts and how long the
// source read before it took.
type createClock struct {
	*fakeWorld
	src     *timedSource
	created chan createdAt
}

type createdAt struct {
	at   time.Time
	read time.Duration
}

func (c *createClock) Create(ctx context.Context, spec hypervisor.Spec) (hypervisor.VM, error) {
	select {
	case c.created <- createdAt{time.Now(), c.src.lastRead()}:
	default:
	}
	return c.fakeWorld.Create(ctx, spec)
}

// timedSource is a Source that adds up the time spent reading it: the fetch.
type timedSource struct {
	Source
	mu   sync.Mutex
	last time.Duration
}

func (s *timedSource) Read(ctx context.Context) (sources.Revision, error) {
	start := time.Now()
	rev, err := s.Source.Read(ctx)
	s.mu.Lock()
	s.last = time.Since(start)
	s.mu.Unlock()
	return rev, err
}

func (s *timedSource) lastRead() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func benchFleet(version int) string {
	return fmt.Sprintf(`services:
  - name: web
    version: "%d"
    replicas: 1
    cpus: 1
    memory: 128MiB
    image:
      kernel: {url: "file:///images/vmlinuz", sha256: "%064d"}
    network: {mode: user}
    port: 8080
    check: {http: /healthz, interval: 1s, timeout: 1s}
    update: {strategy: blue-green, healthy_deadline: 10s, drain: 0s, shutdown_timeout: 1s}
`, version, 1)
}

// BenchmarkWebhookToCreate measures a push webhook received → the rollout's first VM
// create started: the real webhook.Handler (verification, coalescer), Runner and
// Reconciler, the real git source over a local repository, and a fake hypervisor that
// notes when Create is called. Each op commits a new version, delivers a signed GitHub
// push and waits for the create. Target: under 200 ms, not counting the fetch
// (metric own-ms/op; fetch-ms/op is the source read, total-ms/op both).
func BenchmarkWebhookToCreate(b *testing.B) {
	const secret = "bench-secret-0123456789"
	repo := testenv.NewRepo(b)
	repo.Commit(b, map[string]string{"fleet.yaml": "services: []\n"}, "empty")
	git, err := sources.NewGit(sources.GitConfig{URL: repo.URL(), Dir: filepath.Join(b.TempDir(), "git")}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	src := &timedSource{Source: git}
	w := &createClock{fakeWorld: newFakeWorld(), src: src, created: make(chan createdAt, 1)}
	r, err := New(Config{Fleet: "bench", Hypervisor: w, Registrar: w, Health: w, Images: w, ProbeInterval: time.Millisecond, PruneDrain: time.Millisecond,
		Budget: Budget{MaxVMs: 1000, MaxMemoryMiB: 1 << 20, MaxCPUs: 1000}})
	if err != nil {
		b.Fatal(err)
	}
	runner := &Runner{Source: src, Reconciler: r, Interval: time.Hour}
	hook, err := webhook.New(webhook.Config{Secret: []byte(secret), Tracks: git.Ref().Moves, Trigger: runner.Reconcile})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	go hook.Run(ctx)
	defer func() {
		cancel()
		<-done
	}()
	waitStatus := func(what string, cond func(Status) bool) {
		deadline := time.Now().Add(30 * time.Second)
		for !cond(runner.Status()) {
			if time.Now().After(deadline) {
				b.Fatalf("timed out waiting for %s: status %+v", what, runner.Status())
			}
			time.Sleep(time.Millisecond) // polling the runner's status, with the deadline above
		}
	}
	waitStatus("the first pass", func(s Status) bool { return s.Converged })

	var total, fetch time.Duration
	var owns []time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		sha := repo.Commit(b, map[string]string{"fleet.yaml": benchFleet(i + 1)}, fmt.Sprintf("v%d", i+1))
		body := fmt.Appendf(nil, `{"ref":"refs/heads/main","after":%q}`, sha)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		req := httptest.NewRequest(http.MethodPost, "/hooks/git", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		rec := httptest.NewRecorder()
		b.StartTimer()
		start := time.Now()
		hook.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("webhook: %d %s", rec.Code, rec.Body)
		}
		var created createdAt
		select {
		case created = <-w.created:
		case <-time.After(30 * time.Second):
			b.Fatalf("no VM create within 30s of the push of %s", sha)
		}
		b.StopTimer()
		took, read := created.at.Sub(start), created.read
		total += took
		fetch += read
		owns = append(owns, took-read)
		waitStatus("the rollout of "+sha, func(s Status) bool {
			return s.Revision == sha && s.Converged && s.Error == ""
		})
		b.StartTimer()
	}
	b.StopTimer()
	sort.Slice(owns, func(i, j int) bool { return owns[i] < owns[j] })
	n := float64(b.N)
	b.ReportMetric(float64(total.Microseconds())/1000/n, "total-ms/op")
	b.ReportMetric(float64(fetch.Microseconds())/1000/n, "fetch-ms/op")
	b.ReportMetric(float64((total-fetch).Microseconds())/1000/n, "own-ms/op")
	b.ReportMetric(float64(owns[len(owns)-1].Microseconds())/1000, "own-max-ms")
	b.ReportMetric(0, "ns/op")
}
