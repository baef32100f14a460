package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/testenv"
)

// auditLine is one JSON log line of `drover run --log-format json`.
type auditLine struct {
	Time time.Time `json:"time"`
	Msg  string    `json:"msg"`
	Op   string    `json:"op"`
	VM   string    `json:"vm"`
}

// mutations are the audit trail's "mutating step" lines in a JSON log.
func mutations(t *testing.T, log string) []auditLine {
	t.Helper()
	var out []auditLine
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l auditLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			continue // not a log line
		}
		if l.Msg == auditMsg {
			out = append(out, l)
		}
	}
	return out
}

func (l auditLine) String() string {
	return fmt.Sprintf("%s %s %s", l.Time.Format("15:04:05.000000"), l.Op, l.VM)
}

// TestFence freezes the leader (SIGSTOP: it cannot
// heartbeat, notice anything or stop) while a standby takes over, then resumes it.
// Two real `drover run` processes, one Consul agent, real git and QEMU. At no instant
// may both mutate the fleet: the resumed leader must start no mutating step after the
// standby's first, and must say its leadership lapsed and stand by.
func TestFence(t *testing.T) {
	images := testenv.Images(t)
	consul := testenv.Consul(t)
	bin := buildCrashDrover(t)
	reg, err := discovery.New(discovery.Config{Address: consul.Addr}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name string
		// freezeOn is the leader's log line at which it is frozen.
		freezeOn string
		// whileFrozen runs once the standby leads, before the leader resumes.
		whileFrozen func(t *testing.T, commit func(version string))
	}{
		// Frozen in the health gate of its rollout: on resume it is about to register
		// the new VM, drain its predecessor, or roll back.
		{name: "mid", freezeOn: `"created vm"`},
		// Frozen with the fleet converged; a new commit lands while it is frozen, so on
		// resume its next pass has work to do.
		{name: "rest", freezeOn: `"fleet matches the commit"`, whileFrozen: func(t *testing.T, commit func(string)) { commit("2") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			service := "fence-" + tt.name
			repo := testenv.NewRepo(t)
			// One host, one set of VMs: both Drovers share the state directory, as
			// two Drovers of one fleet share a libvirtd.
			state := testenv.StateDir(t)
			t.Cleanup(func() { destroyService(t, "qemu", "", state, service) })
			commit := func(version string) {
				svc := testenv.Service{Name: service, Version: version, Replicas: 1,
					HealthyDeadline: 3 * time.Minute, Drain: time.Second, ShutdownTimeout: 2 * time.Second}
				repo.Commit(t, map[string]string{"fleet.yaml": images.FleetYAML(svc)}, "v"+version)
			}
			commit("1")
			args := []string{"run", "--repo", repo.URL(), "--state-dir", state, "--consul", consul.Addr,
				"--driver", "qemu", "--listen", "", "--interval", "1s", "--log-format", "json", "--log-level", "debug"}
			args = append(args, imageRootArgs(images)...)

			a := startLeaderProc(t, bin, "drover-a", args...)
			a.waitLog(t, logBecameLeader, time.Minute)
			b := startLeaderProc(t, bin, "drover-b", args...)
			b.waitLog(t, logStandingBy, time.Minute)
			a.waitLog(t, tt.freezeOn, 3*time.Minute)
			freeze(t, a)
			frozen := time.Now()

			b.waitLog(t, logBecameLeader, time.Minute)
			t.Logf("standby led %s after the leader froze", time.Since(frozen).Round(time.Millisecond))
			if tt.whileFrozen != nil {
				tt.whileFrozen(t, commit)
			}
			waitFor(t, 3*time.Minute, "the new leader's first mutating step", func() bool { return len(mutations(t, b.log())) > 0 })
			first := mutations(t, b.log())[0]

			thaw(t, a)
			a.waitLog(t, `"leadership lapsed`, time.Minute)
			a.waitLog(t, logStandingBy, time.Minute)
			// Let the new leader finish, so any late step of the old one has had its
			// chance to show.
			b.waitLog(t, `"fleet matches the commit"`, 3*time.Minute)

			var late []string
			for _, m := range mutations(t, a.log()) {
				if !m.Time.Before(first.Time) {
					late = append(late, m.String())
				}
			}
			if len(late) > 0 {
				t.Errorf("the old leader started %d mutating step(s) after the new leader's first (%s):\n  %s",
					len(late), first, strings.Join(late, "\n  "))
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if n, err := reg.PassingCount(ctx, service); err != nil || n != 1 {
				t.Errorf("after the takeover: %d instances of %s passing (err %v), want 1", n, service, err)
			}
			b.stop(t)
			a.stop(t)
		})
	}
}

func freeze(t *testing.T, p *leaderProc) {
	t.Helper()
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %s: %v", p.name, err)
	}
	// However the test ends, the process must be able to die and be reaped.
	t.Cleanup(func() { syscall.Kill(p.cmd.Process.Pid, syscall.SIGCONT) })
}

func thaw(t *testing.T, p *leaderProc) {
	t.Helper()
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT %s: %v", p.name, err)
	}
}
