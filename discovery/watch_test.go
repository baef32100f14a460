package discovery

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestWatchHealthAcrossRestart follows health changes, restarts the agent (its state
// and its indexes start over, far below the one the watch blocks on), and expects
// the next change to be seen: the watch must reset its index, not wait for Consul to
// climb back past the old one.
func TestWatchHealthAcrossRestart(t *testing.T) {
	t.Parallel()
	c, agent := newTestClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan struct{}, 1)
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		c.WatchHealth(ctx, func() {
			select {
			case changes <- struct{}{}:
			default:
			}
		})
	}()
	defer func() { cancel(); <-watching }()

	h := newHealthServer(t, 200)
	r := httpRegistration(t, "web-1", "web", h)
	// seeChange flips web-1's maintenance until the watch reports a change: the
	// watch's first read is not a change, and the test cannot know when it is done.
	seeChange := func(what string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for on := true; ; on = !on {
			if err := c.SetMaintenance(context.Background(), "web-1", on, "test"); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			select {
			case <-changes:
				return
			case <-deadline:
				t.Fatalf("%s: no change seen within 30s", what)
			case <-time.After(time.Second):
			}
		}
	}
	register(t, c, r)
	seeChange("before the restart")
	// Raise the checks index well above what a fresh agent starts from.
	for i := range 40 {
		if err := c.SetMaintenance(context.Background(), "web-1", i%2 == 0, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
	defer rcancel()
	if err := agent.Restart(rctx); err != nil {
		t.Fatal(err)
	}
	select { // the restart itself may or may not show as a change
	case <-changes:
	default:
	}
	register(t, c, r) // the restarted agent lost it
	defer c.Deregister(context.Background(), "web-1")
	seeChange("after the restart")
}
