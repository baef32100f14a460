package discovery

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stoppedLeaderEnv carries the agent address to the helper process.
const stoppedLeaderEnv = "DROVER_TEST_STOPPED_LEADER_CONSUL"

// TestStoppedLeaderHelper is the leader TestStoppedLeaderResumesFenced stops: it
// leads, then does guarded steps, printing "act <unix nanos>" as each one starts,
// until Guard refuses.
func TestStoppedLeaderHelper(t *testing.T) {
	addr := os.Getenv(stoppedLeaderEnv)
	if addr == "" {
		t.Skip("helper process for TestStoppedLeaderResumesFenced")
	}
	c, err := New(Config{Address: addr}, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := c.Lead(ctx, testKey, LeaderOptions{Holder: "stopped"})
	if err != nil {
		t.Fatalf("Lead: %v", err)
	}
	fmt.Println("leading")
	for ctx.Err() == nil {
		gctx, done, err := l.Guard(ctx)
		if err != nil {
			fmt.Println("lapsed", err)
			break
		}
		fmt.Println("act", time.Now().UnixNano())
		// One step: a short piece of work that ends early if the guard fires.
		select {
		case <-gctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
		done()
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	fmt.Println("released", l.Release(rctx))
}

// TestStoppedLeaderResumesFenced stops a leading process (SIGSTOP) while a standby
// waits, lets the standby take over, then resumes the old leader: it must start no
// step from the moment the standby leads. Its lease is measured on the monotonic
// clock, which kept running while it was stopped.
func TestStoppedLeaderResumesFenced(t *testing.T) {
	if os.Getenv(stoppedLeaderEnv) != "" {
		t.Skip("in the helper process")
	}
	t.Parallel()
	cb, agent := newTestClient(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestStoppedLeaderHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), stoppedLeaderEnv+"="+agent.Addr)
	cmd.Stderr = tLog{t}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		for range lines {
		}
		<-exited
	})

	next := func(what string) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("helper exited while waiting for %s", what)
			}
			return l
		case <-time.After(time.Minute):
			t.Fatalf("helper: no %s within a minute", what)
		}
		return ""
	}
	for l := next("leading"); l != "leading"; l = next("leading") {
		if strings.HasPrefix(l, "---") || strings.HasPrefix(l, "FAIL") {
			t.Fatalf("helper: %s", l)
		}
	}
	b := startStandby(t, cb, "b")
	b.waitStanding(t)
	// Stop it in the middle of its work, a few steps in.
	for acts := 0; acts < 3; {
		if strings.HasPrefix(next("a step"), "act ") {
			acts++
		}
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	t.Logf("stopped the leader at %s", stopped.Format(time.StampMicro))
	r := b.waitLeads(t, takeoverBudget+defaultCheckTTL)
	t.Logf("standby led %s after the leader was stopped", r.at.Sub(stopped).Round(time.Millisecond))
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	acts := 0 // after the first three
	for {
		l := next("lapsed")
		if rest, ok := strings.CutPrefix(l, "act "); ok {
			ns, err := strconv.ParseInt(rest, 10, 64)
			if err != nil {
				t.Fatalf("helper: bad line %q", l)
			}
			acts++
			t.Logf("helper: step %d at %s", acts, time.Unix(0, ns).Format(time.StampMicro))
			if at := time.Unix(0, ns); !at.Before(r.at) {
				t.Errorf("old leader started a step at %s, after the standby led at %s",
					at.Format(time.StampMicro), r.at.Format(time.StampMicro))
			}
			continue
		}
		if strings.HasPrefix(l, "lapsed ") {
			if !strings.Contains(l, ErrNotLeader.Error()) {
				t.Errorf("helper: %q, want it to name %q", l, ErrNotLeader)
			}
			t.Logf("helper after %d more steps: %s", acts, l)
			break
		}
		t.Logf("helper: %s", l)
	}
	for l := range lines {
		t.Logf("helper: %s", l)
	}
	if err := <-exited; err != nil {
		t.Errorf("helper: %v", err)
	}
	exited <- nil // for cleanup
}
