package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/testenv"
)

// crashRow is one line of TestCrashSafety's summary.
type crashRow struct {
	scenario, point string
	from, to        int    // versions: serving before, serving after the restart
	restart         string // the restart's outcome
	minPassing      string // lowest ?passing count seen from before the crash to convergence
	leaks           int
	took            time.Duration
}

// crashStep is one kill of a rollout.
type crashStep struct {
	point     string        // DROVER_CRASH_AT, empty for a kill after delay
	delay     time.Duration // with no point: SIGKILL this long after the start
	unhealthy bool          // roll out a version that never passes (its rollback is the point)
	orphan    bool          // plant a registration without a VM first, so the orphan point is reached
}

// TestCrashSafety proves principle 5 against the real binary, real QEMU and libvirt and
// a real Consul agent: Drover SIGKILLed at any step of a blue-green rollout (every
// reconciler hook point, and random instants) is started again and converges to the
// commit with exactly the replicas, nothing leaked, and never fewer than the replicas
// passing in Consul meanwhile. It also restarts libvirtd, and Consul with its state
// lost, in the middle of a rollout.
//
// The rollback point is the one place the commit is not reached: the version never
// becomes healthy, so the contract is that the restart rolls it back too (exit 1,
// "rolled back") and the old version keeps serving throughout — still 2 passing.
//
// DROVER_CRASH_SEED fixes the random kill delays; the seed used is logged.
// DROVER_CRASH_POINTS=p1,p2,… (point names, "random", or "none") runs only those kills,
// to reproduce one quickly.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("boots dozens of VMs; skipped with -short")
	}
	images := testenv.Images(t)
	bin := buildCrashDrover(t)
	var rows []crashRow
	defer func() { crashSummary(t, rows) }()

	t.Run("qemu", func(t *testing.T) {
		rig := newCrashRig(t, bin, "qemu", "", "crashq", images)
		window := crashDeployAndMeasure(t, rig, &rows)

		steps := make([]crashStep, 0, len(reconciler.Points)+4)
		for _, p := range reconciler.Points {
			steps = append(steps, crashStep{
				point:     p,
				unhealthy: p == reconciler.PointRollback,
				orphan:    p == reconciler.PointOrphanDeregistered,
			})
		}
		// The second of two parallel creates and destroys: the first is done, the other
		// in flight or just finished.
		steps = append(steps, crashStep{point: reconciler.PointCreated + ":2"}, crashStep{point: reconciler.PointDestroyed + ":2"})
		seed := uint64(time.Now().UnixNano())
		if s := os.Getenv("DROVER_CRASH_SEED"); s != "" {
			var err error
			if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
				t.Fatalf("DROVER_CRASH_SEED=%q: %v", s, err)
			}
		}
		t.Logf("random kills: seed %d (DROVER_CRASH_SEED=%d reproduces them), window %s", seed, seed, window)
		rnd := rand.New(rand.NewPCG(seed, 0x6372617368))
		for range 3 {
			// Anywhere from Drover's start-up to the end of an uninterrupted rollout.
			steps = append(steps, crashStep{delay: 300*time.Millisecond + time.Duration(rnd.Int64N(int64(window)))})
		}

		only := os.Getenv("DROVER_CRASH_POINTS")
		for _, st := range steps {
			name := st.point
			if name == "" {
				name = "kill-after-" + st.delay.Round(time.Millisecond).String()
			}
			if only != "" && !slices.Contains(strings.Split(only, ","), strings.TrimPrefix(name, "kill-after-")) &&
				!(st.point == "" && slices.Contains(strings.Split(only, ","), "random")) {
				continue
			}
			if !t.Run(name, func(t *testing.T) { rows = append(rows, crashAndRestart(t, rig, st)) }) {
				// Later steps start from the fleet this one left: stop at the first failure
				// rather than report its consequences as more failures.
				t.Fatalf("stopping after %s failed", name)
			}
		}
		t.Run("consul-restart", func(t *testing.T) { rows = append(rows, crashConsulRestart(t, rig)...) })
	})

	t.Run("libvirtd-restart", func(t *testing.T) {
		uri := testenv.Libvirt(t)
		rig := newCrashRig(t, bin, "libvirt", uri, "crashlv", images)
		crashDeployAndMeasure(t, rig, &rows)
		rows = append(rows, crashLibvirtdRestart(t, rig))
	})
}

// crashDeployAndMeasure deploys version 1, then rolls to version 2 without interruption and
// returns how long that took: the window in which random kills land.
func crashDeployAndMeasure(t *testing.T, rig *crashRig, rows *[]crashRow) time.Duration {
	t.Helper()
	rig.commitNext(t, false)
	start := time.Now()
	if code, stderr, err := crashRunOnce(rig.bin, 4*time.Minute, rig.onceArgs()...); err != nil || code != 0 {
		t.Fatalf("deploy v1: exit %d (%v), want 0\n%s", code, err, stderr)
	}
	leaks, _ := rig.audit(t, 1, nil)
	rig.serving = 1
	*rows = append(*rows, crashRow{scenario: rig.driver, point: "deploy", from: 0, to: 1, restart: "-", minPassing: "-", leaks: leaks, took: time.Since(start)})
	if t.Failed() {
		t.FailNow()
	}

	rig.commitNext(t, false)
	w := crashWatchPassing(rig.reg, rig.service)
	start = time.Now()
	code, stderr, err := crashRunOnce(rig.bin, 4*time.Minute, rig.onceArgs()...)
	window := time.Since(start)
	minPassing, samples, errs, lastErr, _ := w.stop()
	if err != nil || code != 0 {
		t.Fatalf("roll to v2: exit %d (%v), want 0\n%s", code, err, stderr)
	}
	crashCheckPassing(t, minPassing, samples, errs, lastErr)
	leaks, _ = rig.audit(t, 2, nil)
	rig.serving = 2
	*rows = append(*rows, crashRow{scenario: rig.driver, point: "no crash", from: 1, to: 2, restart: "-", minPassing: strconv.Itoa(minPassing), leaks: leaks, took: window})
	if t.Failed() {
		t.FailNow()
	}
	return window
}

func crashCheckPassing(t *testing.T, minPassing, samples, errs int, lastErr error) {
	t.Helper()
	if errs > 0 {
		t.Errorf("passing watcher: %d of %d polls of Consul failed, last: %v", errs, errs+samples, lastErr)
	}
	if samples < 5 {
		t.Errorf("passing watcher: only %d samples, want a sample every 100ms", samples)
	}
	if minPassing < 2 {
		t.Errorf("min passing during the sequence: got %d, want >= 2 (blue-green never drops below the replicas)", minPassing)
	}
}

// crashAndRestart rolls the rig to its next version, kills Drover per st, runs
// `drover run --once` as the restart and checks the outcome.
func crashAndRestart(t *testing.T, rig *crashRig, st crashStep) crashRow {
	from := rig.serving
	rig.commitNext(t, st.unhealthy)
	to := rig.version
	if st.unhealthy {
		to = from // the contract: the old version keeps serving
	}
	row := crashRow{scenario: rig.driver, point: st.point, from: from, to: to}
	if st.point == "" {
		row.point = "random " + st.delay.Round(time.Millisecond).String()
	}
	if st.orphan {
		crashPlantOrphan(t, rig)
	}

	w := crashWatchPassing(rig.reg, rig.service)
	start := time.Now()
	var env []string
	if st.point != "" {
		env = append(env, crashEnv+"="+st.point)
	}
	p := startCrashDrover(t, rig.bin, env, rig.args()...)
	if st.point == "" {
		if p.wait(st.delay) {
			t.Fatalf("drover exited by itself before the kill (%v)\n%s", p.err, p.log.tail(40))
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("SIGKILL drover: %v", err)
		}
	}
	const deadline = 3 * time.Minute
	if !p.wait(deadline) {
		t.Fatalf("drover still running %s after start: point %s never reached\n%s", deadline, st.point, p.log.tail(60))
	}
	if !p.killedBy(syscall.SIGKILL) {
		t.Fatalf("drover ended with %v, want killed by SIGKILL\n%s", p.err, p.log.tail(60))
	}
	if st.point != "" {
		point, _, _ := strings.Cut(st.point, ":")
		if !slices.ContainsFunc(p.log.snapshotLines(), func(l string) bool {
			return strings.Contains(l, `msg="fault injection: SIGKILL"`) && strings.Contains(l, "point="+point)
		}) {
			t.Fatalf("no fault-injection message for point %s: killed elsewhere?\n%s", st.point, p.log.tail(60))
		}
	}
	created := crashCreatedVMs(p.log.snapshotLines())
	t.Logf("killed after %s; VMs it created: %v", time.Since(start).Round(time.Millisecond), created)

	code, stderr, err := crashRunOnce(rig.bin, deadline, rig.onceArgs()...)
	row.took = time.Since(start)
	row.restart = "exit " + strconv.Itoa(code)
	minPassing, samples, errs, lastErr, ids := w.stop()
	row.minPassing = strconv.Itoa(minPassing)
	switch {
	case err != nil:
		t.Errorf("restart: %v\n%s", err, stderr)
	case st.unhealthy:
		if code != 1 || !strings.Contains(stderr, "rolled back") {
			t.Errorf("restart after a crash in the rollback: exit %d, want 1 with a rollback message\n%s", code, stderr)
		}
	case code != 0:
		t.Errorf("restart: exit %d, want 0\n%s", code, stderr)
	}
	crashCheckPassing(t, minPassing, samples, errs, lastErr)
	row.leaks, _ = rig.audit(t, to, append(created, ids...))
	rig.serving = to
	if t.Failed() {
		t.Logf("crashed run's log:\n%s\nrestart's log:\n%s", p.log.tail(80), stderr)
	}
	return row
}

// crashPlantOrphan registers an instance of the rig's fleet whose VM does not exist
// (what a Drover killed between destroy and deregister leaves), under another service
// so the watched passing count is not affected.
func crashPlantOrphan(t *testing.T, rig *crashRig) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := rig.reg.Register(ctx, discovery.Registration{
		ID: rig.service + "x-00000000-orphn", Service: rig.service + "x", Address: "127.0.0.1", Port: 9,
		Tags:  []string{reconciler.Tag},
		Meta:  map[string]string{reconciler.MetaFleet: options{repo: rig.repo.URL(), branch: "main", path: "fleet.yaml"}.fleetName()},
		Check: discovery.Check{TCP: true, Interval: time.Second},
	})
	if err != nil {
		t.Fatalf("plant orphan registration: %v", err)
	}
}

// crashConsulRestart restarts the Consul agent, which forgets every registration (and
// Drover's leader lock), under a running Drover: first in the middle of a rollout, then
// with the fleet converged. Healthy VMs must be registered again, not replaced, and the
// rollout must go on: Consul being away is an outage, not a fault of the revision. The
// passing count necessarily drops to 0 while Consul is gone and empty, so it is not held
// to the replicas here; it must come back to 2.
func crashConsulRestart(t *testing.T, rig *crashRig) []crashRow {
	const converge = 90 * time.Second
	from := rig.serving
	rig.commitNext(t, false)
	start := time.Now()
	p := startCrashDrover(t, rig.bin, nil, rig.args()...)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var created []string
	if err := p.log.waitLines(ctx, func(l []string) bool { created = crashCreatedVMs(l); return len(created) >= 2 }); err != nil {
		t.Fatalf("no 2 VMs created: %v\n%s", err, p.log.tail(40))
	}
	if err := rig.consul.Restart(ctx); err != nil {
		t.Fatalf("restart consul: %v", err)
	}
	t.Logf("consul restarted with its state lost, %s into the rollout; new VMs %v", time.Since(start).Round(time.Millisecond), created)
	row := crashRow{scenario: "qemu", point: "consul restart mid-rollout", from: from, to: rig.version, minPassing: "n/a (0 by design)"}
	names, err := rig.waitConsulServesOrHeld(ctx, p, converge)
	switch {
	case err != nil:
		t.Errorf("BUG: running drover did not converge after consul lost its state mid-rollout: %v\n%s", err, p.log.tail(30))
		row.restart = "daemon NOT converged"
	case !crashSameNames(names, created):
		t.Errorf("after consul restart mid-rollout: serving %v, want the VMs created before it %v (registered again, not replaced)", names, created)
		row.restart = "daemon converged, VMs replaced"
	default:
		row.restart = "daemon converged, same VMs"
	}
	p.stop(t)
	// Whatever the daemon did, a restart must converge without leaks.
	code, stderr, err := crashRunOnce(rig.bin, 3*time.Minute, rig.onceArgs()...)
	row.restart += "; --once exit " + strconv.Itoa(code)
	if err != nil || code != 0 {
		t.Errorf("run --once after the consul restart: exit %d (%v), want 0\n%s", code, err, stderr)
	}
	row.leaks, names = rig.audit(t, rig.version, created)
	rig.serving = rig.version
	row.took = time.Since(start)
	rows := []crashRow{row}
	if code != 0 || row.leaks > 0 || len(names) != 2 {
		return rows // not converged: the next part would only report this again
	}

	// The fleet converged under a running Drover: Consul forgets it all.
	start = time.Now()
	p = startCrashDrover(t, rig.bin, nil, rig.args()...)
	if err := p.log.waitLines(ctx, func(l []string) bool {
		return slices.ContainsFunc(l, func(s string) bool { return strings.Contains(s, `msg="tracking revision"`) })
	}); err != nil {
		t.Fatalf("drover did not start tracking the repository: %v\n%s", err, p.log.tail(40))
	}
	if err := rig.consul.Restart(ctx); err != nil {
		t.Fatalf("restart consul: %v", err)
	}
	row = crashRow{scenario: "qemu", point: "consul restart, converged", from: rig.version, to: rig.version, minPassing: "n/a (0 by design)"}
	after, err := rig.waitConsulServesOrHeld(ctx, p, converge)
	switch {
	case err != nil:
		t.Errorf("running drover did not register the fleet again after consul lost its state: %v\n%s", err, p.log.tail(30))
		row.restart = "daemon NOT converged"
	case !crashSameNames(after, names):
		t.Errorf("after consul restart: serving %v, want the same VMs %v (registered again, not replaced)", after, names)
		row.restart = "VMs replaced"
	default:
		row.restart = "registered again, same VMs"
	}
	p.stop(t)
	row.leaks, _ = rig.audit(t, rig.version, nil)
	row.took = time.Since(start)
	return append(rows, row)
}

// crashLibvirtdRestart stops and starts libvirtd while a running Drover waits for the new
// VMs' health: the driver must reconnect and the rollout complete, or else the next
// `drover run --once` must converge. VMs keep running without libvirtd, so the passing
// count must not drop.
func crashLibvirtdRestart(t *testing.T, rig *crashRig) crashRow {
	from := rig.serving
	rig.commitNext(t, false)
	row := crashRow{scenario: "libvirt", point: "libvirtd restart mid-rollout", from: from, to: rig.version}
	w := crashWatchPassing(rig.reg, rig.service)
	start := time.Now()
	p := startCrashDrover(t, rig.bin, nil, rig.args()...)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var created []string
	if err := p.log.waitLines(ctx, func(l []string) bool { created = crashCreatedVMs(l); return len(created) >= 2 }); err != nil {
		t.Fatalf("no 2 VMs created: %v\n%s", err, p.log.tail(40))
	}
	took := crashRestartLibvirtd(t)
	t.Logf("libvirtd restarted (%s), %s into the rollout; new VMs %v", took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), created)

	_, err := rig.waitConsulServes(ctx, rig.version)
	if err != nil {
		t.Logf("the running drover did not finish the rollout after libvirtd restarted (%v); the next --once run must\n%s", err, p.log.tail(40))
		row.restart = "daemon stuck; "
	} else {
		row.restart = "daemon converged; "
	}
	p.stop(t)
	for _, l := range p.log.snapshotLines() {
		if strings.Contains(l, "reconnect") {
			t.Logf("daemon: %s", l)
		}
	}
	code, stderr, err := crashRunOnce(rig.bin, 3*time.Minute, rig.onceArgs()...)
	row.restart += "--once exit " + strconv.Itoa(code)
	if err != nil || code != 0 {
		t.Errorf("run --once after the libvirtd restart: exit %d (%v), want 0\n%s", code, err, stderr)
	}
	row.took = time.Since(start)
	minPassing, samples, errs, lastErr, ids := w.stop()
	row.minPassing = strconv.Itoa(minPassing)
	crashCheckPassing(t, minPassing, samples, errs, lastErr)
	row.leaks, _ = rig.audit(t, rig.version, append(created, ids...))
	rig.serving = rig.version
	if t.Failed() {
		t.Logf("daemon's log:\n%s", p.log.tail(80))
	}
	return row
}

func crashSameNames(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func crashSummary(t *testing.T, rows []crashRow) {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "driver\tkill point / event\trollout\trestart\tmin passing\tleaks\ttook")
	var points, rollouts, leaks int
	minAll := -1
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\tv%d→v%d\t%s\t%s\t%d\t%s\n", r.scenario, r.point, r.from, r.to, r.restart, r.minPassing, r.leaks, r.took.Round(100*time.Millisecond))
		leaks += r.leaks
		if r.point != "deploy" && (r.from != r.to || r.point == reconciler.PointRollback) {
			rollouts++
		}
		if r.point != "deploy" && r.point != "no crash" && !strings.Contains(r.point, "restart") {
			points++
		}
		if n, err := strconv.Atoi(r.minPassing); err == nil && (minAll < 0 || n < minAll) {
			minAll = n
		}
	}
	tw.Flush()
	t.Logf("crash safety summary: %d kills, %d rollouts, %d leaks, min passing %d (outside consul restarts)\n%s", points, rollouts, leaks, minAll, b.String())
}

// TestCrashHookSpec covers DROVER_CRASH_AT's parsing: a bad value must stop Drover at
// start-up rather than run a fault-injection test that never injects.
func TestCrashHookSpec(t *testing.T) {
	tests := []struct {
		spec    string
		wantErr string // "" means armed
	}{
		{"created", ""},
		{"gate-waiting:3", ""},
		{"created:0", "n >= 1"},
		{"created:-1", "n >= 1"},
		{"created:x", "n >= 1"},
		{"created:", "n >= 1"},
		{"nowhere", "unknown point"},
		{":2", "unknown point"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			t.Setenv(crashEnv, tt.spec)
			hook, err := crashHook(slog.New(slog.DiscardHandler))
			switch {
			case tt.wantErr == "" && (err != nil || hook == nil):
				t.Errorf("got hook %v, err %v; want an armed hook", hook != nil, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("got err %v; want one containing %q", err, tt.wantErr)
			}
			if hook != nil {
				hook("observed-elsewhere") // another point: must return, not kill the test
			}
		})
	}
	t.Run("unset", func(t *testing.T) {
		t.Setenv(crashEnv, "")
		if hook, err := crashHook(slog.New(slog.DiscardHandler)); hook != nil || err != nil {
			t.Errorf("got hook %v, err %v; want none", hook != nil, err)
		}
	})
}

// TestCrashStateLeaks checks the leak detector itself finds what a crash could leave in
// the state directory, so a clean audit means something.
func TestCrashStateLeaks(t *testing.T) {
	tests := []struct {
		driver string
		files  []string // directories for qemu, files for libvirt
		live   []string
		want   []string
	}{
		{"qemu", []string{"crashq-aaaa-1", "crashq-bbbb-2", ".create-crashq-cccc-3-123"}, []string{"crashq-aaaa-1"},
			[]string{".create-crashq-cccc-3-123", "crashq-bbbb-2"}},
		{"qemu", []string{"crashq-aaaa-1"}, []string{"crashq-aaaa-1"}, nil},
		{"libvirt", []string{"vm1.console.log", "vm1.console.log.1", "vm1.qcow2", "vm2.qcow2", "vm3.console.log.2"}, []string{"vm1"},
			[]string{"vm2.qcow2", "vm3.console.log.2"}},
	}
	for _, tt := range tests {
		t.Run(tt.driver, func(t *testing.T) {
			rig := &crashRig{driver: tt.driver, state: t.TempDir()}
			dir := filepath.Join(rig.state, tt.driver)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, f := range tt.files {
				var err error
				if tt.driver == "qemu" {
					err = os.Mkdir(filepath.Join(dir, f), 0o755)
				} else {
					err = os.WriteFile(filepath.Join(dir, f), nil, 0o644)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			live := map[string]bool{}
			for _, n := range tt.live {
				live[n] = true
			}
			var want []string
			for _, w := range tt.want {
				want = append(want, filepath.Join(dir, w))
			}
			if got := rig.stateLeaks(t, live); !slices.Equal(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

func TestCrashCreatedVMs(t *testing.T) {
	lines := []string{
		`time=x level=INFO msg="vm created" driver=qemu vm=web-1 service=web`,
		`time=x level=INFO msg="created vm" revision=abc service=web vm=web-12345678-ab1cd address=127.0.0.1:1`,
		`time=x level=INFO msg="created vm" revision=abc service=web vm=web-12345678-zz9zz address=127.0.0.1:2`,
		`time=x level=INFO msg="retired vm" vm=web-0-0 version=1`,
	}
	want := []string{"web-12345678-ab1cd", "web-12345678-zz9zz"}
	if got := crashCreatedVMs(lines); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
