package main

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/testenv"
)

// takeoverBudget is the promise: a standby leads within this long of the leader's kill -9.
const takeoverBudget = 15 * time.Second

// leaderProc is a running `drover run` whose log the test follows for election lines.
type leaderProc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited

	mu      sync.Mutex
	logs    strings.Builder
	changed chan struct{} // closed and replaced on every new line
}

func startLeaderProc(t *testing.T, bin, name string, args ...string) *leaderProc {
	t.Helper()
	p := &leaderProc{name: name, cmd: exec.Command(bin, args...), done: make(chan struct{}), changed: make(chan struct{})}
	// A drover must not outlive a test binary killed before its cleanups ran.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("log of %s:\n%s", name, p.log())
		}
	})
	return p
}

func (p *leaderProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// waitLog returns when the log contains s, at the latest by timeout.
func (p *leaderProc) waitLog(t *testing.T, s string, timeout time.Duration) time.Time {
	t.Helper()
	p.waitAny(t, timeout, s)
	return time.Now()
}

// waitAny returns the first of subs the log contains, waiting for one up to timeout.
func (p *leaderProc) waitAny(t *testing.T, timeout time.Duration, subs ...string) string {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		logs, changed := p.logs.String(), p.changed
		p.mu.Unlock()
		for _, s := range subs {
			if strings.Contains(logs, s) {
				return s
			}
		}
		select {
		case <-changed:
		case <-p.done:
			if logs != p.log() {
				continue // lines came in with the exit
			}
			t.Fatalf("%s exited without logging any of %q", p.name, subs)
		case <-deadline.C:
			t.Fatalf("%s logged none of %q within %s", p.name, subs, timeout)
		}
	}
}

func (p *leaderProc) has(s string) bool { return strings.Contains(p.log(), s) }

// stop sends SIGTERM and expects a clean exit.
func (p *leaderProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
	select {
	case <-p.done:
		if !p.cmd.ProcessState.Success() {
			t.Errorf("%s after SIGTERM: %v, want a clean exit", p.name, p.cmd.ProcessState)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not exit within 30s of SIGTERM", p.name)
	}
}

// TestLeaderLock runs two real `drover run` processes on one empty fleet and one
// Consul agent.
func TestLeaderLock(t *testing.T) {
	consul := testenv.Consul(t)
	repo := testenv.NewRepo(t)
	repo.Commit(t, map[string]string{"fleet.yaml": "services: []\n"}, "empty fleet")
	bin := filepath.Join(t.TempDir(), "drover")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build drover: %v\n%s", err, out)
	}
	args := func(extra ...string) []string {
		return append([]string{"run", "--repo", repo.URL(), "--state-dir", testenv.StateDir(t), "--consul", consul.Addr,
			"--driver", "qemu", "--listen", "", "--interval", "1s"}, extra...)
	}
	const (
		becameLeader = `msg="became leader"`
		standingBy   = `msg="standing by, leader is `
		passed       = `msg="tracking revision"`
	)

	t.Run("failover after kill -9", func(t *testing.T) {
		// Started together: exactly one leads, the other names it.
		a := startLeaderProc(t, bin, "drover-a", args()...)
		b := startLeaderProc(t, bin, "drover-b", args()...)
		roleA := a.waitAny(t, time.Minute, becameLeader, standingBy)
		roleB := b.waitAny(t, time.Minute, becameLeader, standingBy)
		if roleA == roleB {
			t.Fatalf("both logged %s, want one leader and one standby", roleA)
		}
		if roleB == becameLeader {
			a, b = b, a
		}
		a.waitLog(t, passed, time.Minute)
		if !strings.Contains(b.log(), "pid "+strconv.Itoa(a.cmd.Process.Pid)) {
			t.Errorf("standby does not name the leader's pid %d:\n%s", a.cmd.Process.Pid, b.log())
		}
		if b.has(becameLeader) || b.has(passed) {
			t.Fatalf("standby acts while another leads:\n%s", b.log())
		}

		if err := a.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		<-a.done
		led := b.waitLog(t, becameLeader, takeoverBudget)
		t.Logf("standby became leader %s after the leader's kill -9 (budget %s)", led.Sub(killed).Round(time.Millisecond), takeoverBudget)
		b.waitLog(t, passed, time.Minute)
		b.stop(t)
	})

	t.Run("lock released on exit", func(t *testing.T) {
		// A leader that exits cleanly frees the lock: a run --once right after
		// leads without waiting for any TTL.
		a := startLeaderProc(t, bin, "drover-a", args()...)
		a.waitLog(t, becameLeader, time.Minute)
		// A standby stops as promptly as a leader.
		b := startLeaderProc(t, bin, "drover-b", args()...)
		b.waitLog(t, standingBy, time.Minute)
		b.stop(t)
		a.stop(t)
		cl, err := api.NewClient(&api.Config{Address: consul.Addr})
		if err != nil {
			t.Fatal(err)
		}
		key := reconciler.LeaderKey(options{repo: repo.URL(), branch: "main", path: "fleet.yaml"}.fleetName())
		pair, _, err := cl.KV().Get(key, nil)
		if err != nil {
			t.Fatal(err)
		}
		if pair == nil || pair.Session != "" {
			t.Errorf("lock %s after a clean exit: want present and free, got %+v", key, pair)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		once := exec.CommandContext(ctx, bin, args("--once")...)
		out, err := once.CombinedOutput()
		if err != nil || !strings.Contains(string(out), becameLeader) {
			t.Fatalf("run --once after the leader left: %v, want exit 0 as leader\n%s", err, out)
		}
	})

	t.Run("lock off: both act", func(t *testing.T) {
		// --leader-lock=false is for a single Drover per fleet: nothing stops a
		// second one, and both run passes.
		a := startLeaderProc(t, bin, "drover-a", args("--leader-lock=false")...)
		b := startLeaderProc(t, bin, "drover-b", args("--leader-lock=false")...)
		a.waitLog(t, passed, time.Minute)
		b.waitLog(t, passed, time.Minute)
		for _, p := range []*leaderProc{a, b} {
			if p.has(becameLeader) || p.has("standing by") {
				t.Errorf("%s took part in an election with --leader-lock=false:\n%s", p.name, p.log())
			}
		}
		a.stop(t)
		b.stop(t)
	})
}
