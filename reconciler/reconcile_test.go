package reconciler

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/drover-dev/drover/sources"
)

// heldSource is a Source whose second read waits for release, so a test can call
// Reconcile while a read that began before the call is still running.
type heldSource struct {
	rev     sources.Revision
	started chan int // each read's number as it begins
	release chan struct{}
	mu      sync.Mutex
	reads   int
}

func (s *heldSource) Read(ctx context.Context) (sources.Revision, error) {
	s.mu.Lock()
	s.reads++
	n := s.reads
	s.mu.Unlock()
	s.started <- n
	if n == 2 {
		select {
		case <-s.release:
		case <-ctx.Done():
			return sources.Revision{}, ctx.Err()
		}
	}
	return s.rev, nil
}

// TestReconcileWaitsForARoundBegunAfterTheCall: a read already running when Reconcile
// is called does not count; Reconcile returns only once a read begun after it is done.
func TestReconcileWaitsForARoundBegunAfterTheCall(t *testing.T) {
	w := newFakeWorld()
	src := &heldSource{rev: rev("c1", svc("web", "1", 1, 0)), started: make(chan int, 10), release: make(chan struct{})}
	runner := &Runner{Source: src, Reconciler: fakeReconciler(t, w, nil), Interval: time.Hour}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- runner.Run(ctx) }()
	if n := <-src.started; n != 1 {
		t.Fatalf("first read %d", n)
	}
	// Round 1 deploys and confirms at once (round 2 begins): wait until read 2 hangs.
	for n := range src.started {
		if n == 2 {
			break
		}
	}
	done := make(chan error, 1)
	go func() { done <- runner.Reconcile(ctx) }()
	// Let Reconcile register (it cannot return before read 2 ends, whatever it does),
	// then end read 2: it began before the call, so Reconcile must wait for read 3.
	eventually(t, "Reconcile to wait", func() bool {
		runner.mu.Lock()
		defer runner.mu.Unlock()
		return len(runner.kick) == 1
	})
	close(src.release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Reconcile did not return")
	}
	src.mu.Lock()
	reads := src.reads
	src.mu.Unlock()
	runner.mu.Lock()
	done3 := runner.done
	runner.mu.Unlock()
	if reads < 3 || done3 < 3 {
		t.Errorf("Reconcile returned after %d reads, want a third one begun after the call", reads)
	}
	cancel()
	<-ran
	if err := runner.Reconcile(t.Context()); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Reconcile after Run returned: %v, want ErrNotRunning", err)
	}
}
