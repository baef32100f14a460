package main

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/drover-dev/drover/testenv"
)

// Log messages the election tests wait for.
const (
	logBecameLeader = `"became leader"`
	logStandingBy   = `"standing by, leader is `
)

// TestGitServerNeverAnswers: a git remote that accepts the connection and never
// answers must not hang Drover: `run --once` fails with a timeout, and a leader stuck
// in such a fetch stops on SIGTERM and hands the lock to a standby at once.
func TestGitServerNeverAnswers(t *testing.T) {
	consul := testenv.Consul(t)
	silent := testenv.ServeSilent(t)
	bin := buildCrashDrover(t)
	repo := "http://" + silent.Addr + "/ops/fleet.git"
	args := func(extra ...string) []string {
		return append([]string{"run", "--repo", repo, "--state-dir", testenv.StateDir(t), "--consul", consul.Addr,
			"--driver", "qemu", "--listen", "", "--interval", "1s", "--log-format", "json"}, extra...)
	}

	t.Run("run --once times out", func(t *testing.T) {
		// Far above --git-timeout: reaching it means Drover hangs.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		before := silent.Accepted()
		out, err := exec.CommandContext(ctx, bin, args("--once", "--git-timeout", "3s")...).CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("run --once --git-timeout 3s against a silent git server still running after 2m: it hangs\n%s", out)
		}
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != exitFail {
			t.Fatalf("run --once: %v, want exit %d\n%s", err, exitFail, out)
		}
		if silent.Accepted() == before {
			t.Fatalf("the silent server saw no connection: the test did not exercise a hang\n%s", out)
		}
		if !strings.Contains(string(out), "timed out") || !strings.Contains(string(out), silent.Addr) {
			t.Errorf("run --once: want an error saying the fetch from %s timed out, got:\n%s", silent.Addr, out)
		}
	})

	t.Run("SIGTERM while fetching hands the lock over", func(t *testing.T) {
		// The default --git-timeout (2m) keeps the leader inside the fetch while the
		// test runs: only the signal can end it.
		a := startLeaderProc(t, bin, "drover-a", args()...)
		a.waitLog(t, logBecameLeader, time.Minute)
		b := startLeaderProc(t, bin, "drover-b", args()...)
		b.waitLog(t, logStandingBy, time.Minute)
		waitFor(t, time.Minute, "the leader to connect to the silent git server", func() bool { return silent.Accepted() > 0 })
		if strings.Contains(a.log(), `"tracking revision"`) {
			t.Fatalf("the leader read a revision from a server that never answers:\n%s", a.log())
		}
		stopped := time.Now()
		a.stop(t)
		led := b.waitLog(t, logBecameLeader, takeoverBudget)
		t.Logf("standby led %s after SIGTERM to the leader hung in a git fetch", led.Sub(stopped).Round(time.Millisecond))
		b.stop(t)
	})
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
