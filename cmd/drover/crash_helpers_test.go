package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/hypervisortest"
	"github.com/drover-dev/drover/testenv"
)

// buildCrashDrover builds the real binary: fault injection SIGKILLs the whole process, which
// an in-process run() cannot survive.
func buildCrashDrover(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "drover")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build drover: %v\n%s", err, out)
	}
	return bin
}

// crashLog collects a process's log lines and wakes waiters on every line.
type crashLog struct {
	mu    sync.Mutex
	lines []string
	grew  chan struct{} // closed and replaced on every new line
}

func newCrashLog() *crashLog { return &crashLog{grew: make(chan struct{})} }

func (b *crashLog) add(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, line)
	close(b.grew)
	b.grew = make(chan struct{})
}

func (b *crashLog) snapshot() ([]string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.lines), b.grew
}

func (b *crashLog) String() string {
	lines, _ := b.snapshot()
	return strings.Join(lines, "\n")
}

// tail is the end of the log, for failure messages that must stay readable.
func (b *crashLog) tail(n int) string {
	lines, _ := b.snapshot()
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("… (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// waitLines waits until cond holds on the lines logged so far, or ctx ends.
func (b *crashLog) waitLines(ctx context.Context, cond func([]string) bool) error {
	for {
		lines, grew := b.snapshot()
		if cond(lines) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-grew:
		}
	}
}

var crashCreatedRE = regexp.MustCompile(`msg="created vm" .*\bvm=([A-Za-z0-9_-]+)`)

// crashCreatedVMs are the names of the VMs a Drover log says it created, in order.
func crashCreatedVMs(lines []string) []string {
	var names []string
	for _, l := range lines {
		if m := crashCreatedRE.FindStringSubmatch(l); m != nil {
			names = append(names, m[1])
		}
	}
	return names
}

// crashProc is a running `drover run`.
type crashProc struct {
	cmd  *exec.Cmd
	log  *crashLog
	done chan struct{} // closed once the process has been waited for
	err  error         // Wait's result, valid after done
}

func startCrashDrover(t *testing.T, bin string, env []string, args ...string) *crashProc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start drover: %v", err)
	}
	p := &crashProc{cmd: cmd, log: newCrashLog(), done: make(chan struct{})}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.log.add(sc.Text())
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		<-scanned // Wait closes the pipe: read it to the end first
		p.err = cmd.Wait()
		close(p.done)
	}()
	// A failed test must not leave a Drover running that keeps changing the fleet.
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait returns true once the process has exited, false if it still runs at timeout.
func (p *crashProc) wait(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// killedBy reports whether the exited process was ended by sig.
func (p *crashProc) killedBy(sig syscall.Signal) bool {
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// stop sends SIGTERM and waits for a clean exit.
func (p *crashProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("SIGTERM drover: %v", err)
	}
	if !p.wait(90 * time.Second) {
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("drover did not exit within 90s of SIGTERM\n%s", p.log.tail(40))
		return
	}
	if p.err != nil {
		t.Errorf("drover after SIGTERM: %v, want a clean exit\n%s", p.err, p.log.tail(40))
	}
}

// crashRunOnce runs `drover run --once` (no fault injection) to its end.
func crashRunOnce(bin string, timeout time.Duration, args ...string) (code int, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, crashEnv+"=") })
	var errb bytes.Buffer
	cmd.Stderr = &errb
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return -1, errb.String(), fmt.Errorf("drover run --once did not finish within %s", timeout)
	}
	var exit *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exit) {
		return -1, errb.String(), fmt.Errorf("drover run --once: %w", runErr)
	}
	return cmd.ProcessState.ExitCode(), errb.String(), nil
}

// crashWatch polls Consul's ?passing count of a service every 100 ms and remembers the
// lowest it saw, and every instance ID it saw, until stopped.
type crashWatch struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	min     int
	samples int
	errs    int
	lastErr error
	ids     map[string]bool
}

func crashWatchPassing(reg *discovery.Client, service string) *crashWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &crashWatch{cancel: cancel, done: make(chan struct{}), min: -1, ids: map[string]bool{}}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			n, err := reg.PassingCount(ctx, service)
			ins, ierr := reg.Instances(ctx, "drover")
			if ctx.Err() != nil {
				return
			}
			w.mu.Lock()
			if err = errors.Join(err, ierr); err != nil {
				w.errs++
				w.lastErr = err
			} else {
				w.samples++
				if w.min < 0 || n < w.min {
					w.min = n
				}
				for _, in := range ins {
					w.ids[in.ID] = true
				}
			}
			w.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// stop ends the watch and returns the lowest passing count seen (-1: no sample).
func (w *crashWatch) stop() (minPassing, samples, errs int, lastErr error, ids []string) {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	for id := range w.ids {
		ids = append(ids, id)
	}
	return w.min, w.samples, w.errs, w.lastErr, ids
}

// crashQEMUProcs maps the name of every live QEMU process whose VM name starts with
// prefix to its pids, whoever started it (the direct driver passes "-name <vm>",
// libvirt "-name guest=<vm>,...").
func crashQEMUProcs(prefix string) map[string][]int {
	out := map[string][]int{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		i := slices.Index(args, "-name")
		if i < 0 || i+1 >= len(args) || !strings.Contains(args[0], "qemu") {
			continue
		}
		name := strings.TrimPrefix(args[i+1], "guest=")
		name, _, _ = strings.Cut(name, ",")
		if !strings.HasPrefix(name, prefix) || len(hypervisortest.QEMUProcesses(name)) == 0 {
			continue // another's VM, or a zombie
		}
		out[name] = append(out[name], pid)
	}
	return out
}

// crashDomains lists every libvirt domain (running or not) whose name starts with prefix.
func crashDomains(ctx context.Context, uri, prefix string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "virsh", "-c", uri, "list", "--all", "--name").Output()
	if err != nil {
		return nil, fmt.Errorf("virsh list: %w", err)
	}
	var names []string
	for _, l := range strings.Fields(string(out)) {
		if strings.HasPrefix(l, prefix) {
			names = append(names, l)
		}
	}
	return names, nil
}

// crashRig is one fleet service under test, with its own Consul agent (a Drover owns
// every drover-tagged instance on its agent), repository and state directory.
type crashRig struct {
	bin, driver, uri, state, service string

	images testenv.GuestImages
	consul *testenv.ConsulAgent
	repo   *testenv.Repo
	reg    *discovery.Client

	version int             // the version the last commit asked for
	serving int             // the version the fleet serves
	seen    map[string]bool // every VM name ever seen, for the leak checks
}

func newCrashRig(t *testing.T, bin, driver, uri, service string, images testenv.GuestImages) *crashRig {
	t.Helper()
	r := &crashRig{
		bin: bin, driver: driver, uri: uri, service: service, images: images,
		consul: testenv.Consul(t),
		repo:   testenv.NewRepo(t),
		state:  testenv.StateDir(t),
		seen:   map[string]bool{},
	}
	reg, err := discovery.New(discovery.Config{Address: r.consul.Addr}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r.reg = reg
	t.Cleanup(func() { destroyService(t, driver, uri, r.state, service) })
	return r
}

// args are `drover run`'s arguments for the rig, without --once.
func (r *crashRig) args() []string {
	a := []string{"run", "--repo", r.repo.URL(), "--state-dir", r.state, "--consul", r.consul.Addr,
		"--driver", r.driver, "--listen", "", "--interval", "1s"}
	a = append(a, imageRootArgs(r.images)...)
	if r.uri != "" {
		a = append(a, "--libvirt-uri", r.uri)
	}
	return a
}

func (r *crashRig) onceArgs() []string {
	return append([]string{"run", "--once"}, r.args()[1:]...)
}

// commitNext commits the next version: 2 replicas, blue-green. A drain of 1s makes the
// drained point reachable; a short shutdown timeout keeps retirement quick. An unhealthy
// version gets a short healthy_deadline so its rollback comes soon.
func (r *crashRig) commitNext(t *testing.T, unhealthy bool) {
	t.Helper()
	r.version++
	svc := testenv.Service{
		Name: r.service, Version: strconv.Itoa(r.version), Replicas: 2,
		Drain: time.Second, ShutdownTimeout: 2 * time.Second, HealthyDeadline: 60 * time.Second,
	}
	if unhealthy {
		svc.Unhealthy, svc.HealthyDeadline = true, 8*time.Second
	}
	r.repo.Commit(t, map[string]string{"fleet.yaml": r.images.FleetYAML(svc)}, "v"+svc.Version)
}

func (r *crashRig) hv(t *testing.T, ctx context.Context) driver {
	t.Helper()
	hv, err := newDriver(ctx, options{driver: r.driver, libvirtURI: r.uri, stateDir: r.state}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open %s driver: %v", r.driver, err)
	}
	return hv
}

// audit checks, with no Drover running, that the fleet serves exactly 2 VMs of
// version want, all registered and passing, and that nothing leaked: no extra VM, no
// registration without a VM, no QEMU process or libvirt domain of a VM that is gone,
// no state entry or overlay of a VM that is gone. It reports each problem with t.Errorf
// and returns the leaks found and the live VM names.
func (r *crashRig) audit(t *testing.T, want int, extraSeen []string) (leaks int, live []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wantVersion := strconv.Itoa(want)
	leak := func(format string, args ...any) {
		t.Helper()
		leaks++
		t.Errorf("LEAK: "+format, args...)
	}

	hv := r.hv(t, ctx)
	defer hv.Close()
	vms, err := hv.List(ctx)
	if err != nil {
		t.Fatalf("list vms: %v", err)
	}
	instances, err := r.reg.Instances(ctx, "drover")
	if err != nil {
		t.Fatalf("consul instances: %v", err)
	}
	passing, err := r.reg.PassingCount(ctx, r.service)
	if err != nil {
		t.Fatalf("consul passing count: %v", err)
	}

	liveSet := map[string]bool{}
	for _, vm := range vms {
		liveSet[vm.Name] = true
		r.seen[vm.Name] = true
		live = append(live, vm.Name)
	}
	for _, n := range extraSeen {
		r.seen[n] = true
	}
	byID := map[string]discovery.Instance{}
	for _, in := range instances {
		byID[in.ID] = in
		r.seen[in.ID] = true
	}

	// Converged to the commit.
	if len(vms) != 2 {
		t.Errorf("VMs: got %d %v, want 2 of version %s", len(vms), live, wantVersion)
		if len(vms) > 2 {
			leak("%d VMs, want 2: %v", len(vms), live)
		}
	}
	for _, vm := range vms {
		if vm.Meta.Service != r.service || vm.Meta.Version != wantVersion || vm.State != hypervisor.StateRunning {
			t.Errorf("VM %s: got service %s version %s state %s, want %s version %s running",
				vm.Name, vm.Meta.Service, vm.Meta.Version, vm.State, r.service, wantVersion)
		}
		in, ok := byID[vm.Name]
		switch {
		case !ok:
			t.Errorf("VM %s is not registered in Consul", vm.Name)
		case in.Status != discovery.StatusPassing || in.Meta["version"] != wantVersion:
			t.Errorf("instance %s: got %s version %s, want passing version %s (%s)", vm.Name, in.Status, in.Meta["version"], wantVersion, in.Output)
		}
	}
	if passing != 2 {
		t.Errorf("consul ?passing for %s: got %d, want 2", r.service, passing)
	}

	// Registrations without a VM.
	for _, in := range instances {
		if !liveSet[in.ID] {
			leak("consul instance %s (service %s, %s) has no VM", in.ID, in.Service, in.Status)
		}
	}
	// QEMU processes: one per live VM, none for anything else named like the service.
	procs := crashQEMUProcs(r.service + "-")
	for name, pids := range procs {
		switch {
		case !liveSet[name]:
			leak("qemu process %v runs VM %s, which Drover no longer has", pids, name)
		case len(pids) > 1:
			leak("VM %s has %d qemu processes %v", name, len(pids), pids)
		}
	}
	for name := range r.seen {
		if !liveSet[name] && procs[name] == nil {
			if pids := hypervisortest.QEMUProcesses(name); len(pids) > 0 {
				leak("qemu process %v runs gone VM %s", pids, name)
			}
		}
	}
	for _, name := range live {
		if len(procs[name]) == 0 {
			t.Errorf("VM %s is listed running but has no qemu process", name)
		}
	}
	// Libvirt domains Drover cannot see (no metadata) would be leaks too.
	if r.driver == "libvirt" {
		doms, err := crashDomains(ctx, r.uri, r.service+"-")
		if err != nil {
			t.Errorf("%v", err)
		}
		for _, d := range doms {
			if !liveSet[d] {
				leak("libvirt domain %s defined but not a live VM of Drover's", d)
			}
		}
	}
	// State entries and overlays.
	r.awaitSweep(t, liveSet)
	for _, p := range r.stateLeaks(t, liveSet) {
		leak("state %s belongs to no live VM", p)
	}
	return leaks, live
}

// stateLeaks walks the driver's part of the state directory and returns every entry
// that belongs to no live VM: a Create's temporary directory, a VM directory, an
// overlay or a console log.
func (r *crashRig) stateLeaks(t *testing.T, live map[string]bool) []string {
	t.Helper()
	dir := filepath.Join(r.state, r.driver)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Errorf("read state dir: %v", err)
		return nil
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if r.driver == "libvirt" {
			// <vm>.qcow2, <vm>.console.log and virtlogd's rotations <vm>.console.log.N
			name, _, _ = strings.Cut(name, ".")
		}
		if !live[name] {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out
}

// qemuSweepMinAge is the qemu driver's sweepMinAge: it leaves a Create's or Destroy's
// leftovers alone for this long, since another Drover on the same state directory may
// be in the middle of one.
const qemuSweepMinAge = time.Minute

// awaitSweep gives the qemu driver's young leftovers (.create-*, .destroy-* of a Drover
// killed moments ago) the minute the driver waits before sweeping them, running passes
// until they are gone or past that age; whatever is still there then is a leak.
func (r *crashRig) awaitSweep(t *testing.T, live map[string]bool) {
	t.Helper()
	if r.driver != "qemu" {
		return
	}
	young := func() time.Time {
		var newest time.Time
		for _, p := range r.stateLeaks(t, live) {
			base := filepath.Base(p)
			if !strings.HasPrefix(base, ".create-") && !strings.HasPrefix(base, ".destroy-") {
				continue
			}
			if fi, err := os.Stat(p); err == nil && time.Since(fi.ModTime()) < qemuSweepMinAge && fi.ModTime().After(newest) {
				newest = fi.ModTime()
			}
		}
		return newest
	}
	newest := young()
	if newest.IsZero() {
		return
	}
	deadline := newest.Add(qemuSweepMinAge + 30*time.Second)
	t.Logf("leftovers of the killed run are younger than the driver's sweep age; passes until %s", deadline.Format("15:04:05"))
	for time.Now().Before(deadline) {
		time.Sleep(5 * time.Second)
		if code, stderr, err := crashRunOnce(r.bin, 2*time.Minute, r.onceArgs()...); err != nil || code != 0 {
			t.Logf("pass to sweep leftovers: exit %d (%v)\n%s", code, err, stderr)
		}
		if len(r.stateLeaks(t, live)) == 0 {
			return
		}
	}
}

// crashRestartLibvirtd stops the libvirtd named by its pid file with SIGTERM, waits for it
// to exit and starts it again. Only that pid is signalled: other daemons on the
// machine are not ours to kill.
func crashRestartLibvirtd(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	data, err := os.ReadFile("/var/run/libvirtd.pid")
	if err != nil {
		t.Fatalf("libvirtd pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		t.Fatalf("libvirtd pid file holds %q", data)
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != "libvirtd" {
		t.Fatalf("pid %d from /var/run/libvirtd.pid is not libvirtd (comm %q, %v)", pid, comm, err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM libvirtd %d: %v", pid, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		// A restarted libvirtd is a new pid, so the old one is gone once its /proc
		// entry is, or is a zombie of whoever reaps it.
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || bytes.Contains(st, []byte(") Z ")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("libvirtd %d still running 30s after SIGTERM", pid)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition, with the deadline above
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := testenv.EnsureLibvirtd(ctx, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("start libvirtd again: %v", err)
	}
	return time.Since(start)
}

// waitConsulServes waits until Consul shows exactly the VMs of version want, 2 of them,
// all passing, and exactly as many QEMU processes for the service: a running Drover has
// converged. It reads nothing through the driver, whose QMP sockets Drover is using.
func (r *crashRig) waitConsulServes(ctx context.Context, want int) ([]string, error) {
	wantVersion := strconv.Itoa(want)
	var last string
	for {
		ins, err := r.reg.Instances(ctx, "drover")
		if err == nil {
			var names []string
			ok := len(ins) == 2
			for _, in := range ins {
				names = append(names, in.ID)
				ok = ok && in.Status == discovery.StatusPassing && in.Meta["version"] == wantVersion && in.Service == r.service
			}
			procs := crashQEMUProcs(r.service + "-")
			ok = ok && len(procs) == 2
			for _, n := range names {
				ok = ok && len(procs[n]) == 1
			}
			if ok {
				return names, nil
			}
			last = fmt.Sprintf("instances %v, qemu processes %v", crashDescribe(ins), procs)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("fleet not serving 2 VMs of version %s: %w; last seen: %s", wantVersion, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func crashDescribe(ins []discovery.Instance) string {
	var parts []string
	for _, in := range ins {
		parts = append(parts, fmt.Sprintf("%s(v%s %s)", in.ID, in.Meta["version"], in.Status))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func (b *crashLog) snapshotLines() []string {
	lines, _ := b.snapshot()
	return lines
}

// waitConsulServesOrHeld is waitConsulServes for a running Drover, bounded by limit,
// that gives up at once when Drover says it holds the revision as failed: it would wait
// for a new commit, so the fleet will not converge.
func (r *crashRig) waitConsulServesOrHeld(ctx context.Context, p *crashProc, limit time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	held := make(chan string, 1)
	go func() {
		var line string
		err := p.log.waitLines(ctx, func(l []string) bool {
			i := slices.IndexFunc(l, func(s string) bool { return strings.Contains(s, "failed for this spec") })
			if i >= 0 {
				line = l[i]
			}
			return i >= 0
		})
		if err == nil {
			held <- line
			cancel()
		}
	}()
	names, err := r.waitConsulServes(ctx, r.version)
	select {
	case line := <-held:
		return nil, fmt.Errorf("drover holds the revision as failed and waits for a new commit: %s", line)
	default:
	}
	return names, err
}
