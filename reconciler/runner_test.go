package reconciler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestOnlyHeld(t *testing.T) {
	held := &HeldError{Service: "web", Reason: "failed"}
	other := errors.New("consul down")
	tests := []struct {
		err  error
		want bool
	}{
		{held, true},
		{errors.Join(held, &HeldError{Service: "db"}), true},
		{errors.Join(held, other), false},
		{other, false},
		{fmt.Errorf("pass: %w", held), true},
		{&RolloutError{Service: "web", Err: other}, false},
	}
	for i, tt := range tests {
		if got := onlyHeld(tt.err); got != tt.want {
			t.Errorf("%d: onlyHeld(%v) = %v, want %v", i, tt.err, got, tt.want)
		}
	}
}

// TestStatusKeepsSourceError: while the repository cannot be read, passes go on over
// the last good revision, and /status keeps saying why the newest cannot be read (a
// pass that found the fleet matching must not wipe the fetch error).
func TestStatusKeepsSourceError(t *testing.T) {
	w := newFakeWorld()
	r := fakeReconciler(t, w, nil)
	src := &revSource{}
	src.set(rev("c1", svc("a", "1", 1, 0)))
	runner := &Runner{Source: src, Reconciler: r, Interval: time.Millisecond, MaxBackoff: time.Millisecond}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	eventually(t, "the fleet converged", func() bool { return runner.Status().Converged })

	at := src.fail(errors.New("fetch https://git.lan/fleet.git: connection refused"))
	eventually(t, "passes over the last good revision", func() bool { return src.readCount() >= at+3 })
	st := runner.Status()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if !strings.Contains(st.Error, "connection refused") || st.Revision != "c1" {
		t.Errorf("status while the source fails: %+v, want revision c1 and the fetch error", st)
	}
}
