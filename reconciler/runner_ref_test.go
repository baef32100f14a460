package reconciler

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// Status names the ref and tag beside the commit, and keeps them, with the last good
// commit, while the source refuses a newer one (an unsigned commit, say).
func TestStatusShowsRefAndTag(t *testing.T) {
	w := newFakeWorld()
	r := fakeReconciler(t, w, nil)
	src := &revSource{}
	good := rev("c1", svc("a", "1", 1, 0))
	good.Ref, good.Tag = "semver:^1", "v1.2.0"
	src.set(good)
	runner := &Runner{Source: src, Reconciler: r, Interval: time.Millisecond, MaxBackoff: time.Millisecond}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	eventually(t, "the fleet converged", func() bool { return runner.Status().Converged })
	if st := runner.Status(); st.Revision != "c1" || st.Ref != "semver:^1" || st.Tag != "v1.2.0" {
		t.Errorf("status = %+v, want c1 at semver:^1 through v1.2.0", st)
	}
	at := src.fail(errors.New("commit c2: refused commit c2: unsigned"))
	eventually(t, "passes over the last good revision", func() bool { return src.readCount() >= at+3 })
	st := runner.Status()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if st.Revision != "c1" || st.Ref != "semver:^1" || st.Tag != "v1.2.0" || !strings.Contains(st.Error, "unsigned") {
		t.Errorf("status while the source refuses: %+v, want c1, its ref and tag, and the refusal", st)
	}
}
