package reconciler_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/libvirt"
	"github.com/drover-dev/drover/hypervisor/qemu"
	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/sources"
	"github.com/drover-dev/drover/testenv"
)

// world is one end-to-end environment: libvirt qemu:///system, a fresh Consul dev agent,
// a git repository and the test golden images, with a reconciler wired to them.
type world struct {
	t        testing.TB
	images   testenv.GuestImages
	repo     *testenv.Repo
	consul   *testenv.ConsulAgent
	reg      *discovery.Client
	hv       driver
	cache    *sources.ImageCache
	rec      *reconciler.Reconciler
	stateDir string
	log      *slog.Logger
	sources  int    // git sources made, each with its own clone
	fleet    string // the reconciler's fleet
}

// driver is a hypervisor driver as the tests hold it.
type driver interface {
	reconciler.Hypervisor
	Close() error
}

// drivers are the real drivers every end-to-end test runs against.
var drivers = []string{"libvirt", "qemu"}

// forEachDriver runs test once per real driver, each in a fresh world.
func forEachDriver(t *testing.T, test func(t *testing.T, w *world)) {
	for _, name := range drivers {
		t.Run(name, func(t *testing.T) { test(t, newWorld(t, name)) })
	}
}

func newWorld(t testing.TB, driverName string) *world {
	t.Helper()
	return newWorldOn(t, driverName, testenv.Consul(t), "")
}

// newWorldOn is a world on the given Consul agent whose reconciler manages fleet; its
// repository, state dir and driver connection are its own.
func newWorldOn(t testing.TB, driverName string, consul *testenv.ConsulAgent, fleet string) *world {
	t.Helper()
	w := &world{t: t, images: testenv.Images(t), consul: consul, repo: testenv.NewRepo(t), fleet: fleet}
	w.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w.stateDir = testenv.StateDir(t)
	var err error
	switch driverName {
	case "libvirt":
		uri := testenv.Libvirt(t)
		w.hv, err = libvirt.New(t.Context(), libvirt.Config{URI: uri, StateDir: w.stateDir}, w.log)
	case "qemu":
		w.hv, err = qemu.New(t.Context(), qemu.Config{StateDir: w.stateDir}, w.log)
	default:
		t.Fatalf("unknown driver %q", driverName)
	}
	if err != nil {
		t.Fatalf("%s driver: %v", driverName, err)
	}
	if w.reg, err = discovery.New(discovery.Config{Address: w.consul.Addr}, w.log); err != nil {
		t.Fatalf("discovery: %v", err)
	}
	if w.cache, err = sources.NewImageCache(sources.ImageCacheConfig{Dir: filepath.Join(w.stateDir, "images"), Roots: []string{filepath.Dir(w.images.Kernel.Path), filepath.Dir(w.images.Initrd.Path), filepath.Dir(w.images.UnhealthyInitrd.Path)}}, w.log); err != nil {
		t.Fatalf("image cache: %v", err)
	}
	w.rec = w.newReconciler()
	t.Cleanup(func() {
		// Whatever a failed test left behind goes, so the next test starts clean.
		ctx := context.Background()
		vms, _ := w.hv.List(ctx)
		for _, vm := range vms {
			if strings.HasPrefix(vm.Meta.Service, "e2e-") {
				_ = w.hv.Destroy(ctx, vm.Name)
			}
		}
		_ = w.hv.Close()
	})
	return w
}

func (w *world) newReconciler() *reconciler.Reconciler {
	rec, err := reconciler.New(reconciler.Config{
		Fleet: w.fleet, Hypervisor: w.hv, Registrar: w.reg, Health: w.reg, Failures: w.reg, Reservations: w.reg, Events: w.reg, Images: w.cache, Log: w.log, History: historyOf(w),
		PruneDrain: 200 * time.Millisecond, PruneShutdownTimeout: 3 * time.Second,
		// Short, so the drift test can show a VM failing its check being replaced.
		ReplaceUnhealthyAfter: 3 * time.Second,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return rec
}

// historyOf reads earlier commits of the world's repository.
func historyOf(w *world) reconciler.History { return history{w} }

type history struct{ w *world }

func (h history) Fleet(ctx context.Context, commit string) (*sources.Fleet, error) {
	src, err := sources.NewGit(sources.GitConfig{URL: h.w.repo.URL(), Branch: "main", Path: "fleet.yaml"}, h.w.log)
	if err != nil {
		return nil, err
	}
	if _, err := src.Fetch(ctx); err != nil {
		return nil, err
	}
	return src.Fleet(ctx, commit)
}

func (w *world) source(url string) *sources.Git {
	w.t.Helper()
	w.sources++
	dir := filepath.Join(w.stateDir, fmt.Sprintf("git-%d", w.sources))
	src, err := sources.NewGit(sources.GitConfig{URL: url, Branch: "main", Path: "fleet.yaml", Dir: dir}, w.log)
	if err != nil {
		w.t.Fatalf("git source: %v", err)
	}
	return src
}

func (w *world) commit(fleet string) string {
	return w.repo.Commit(w.t, map[string]string{"fleet.yaml": fleet}, "fleet")
}

// converge runs passes like `drover run --once`.
func (w *world) converge(src reconciler.Source) error {
	ctx, cancel := context.WithTimeout(w.t.Context(), 4*time.Minute)
	defer cancel()
	r := &reconciler.Runner{Source: src, Reconciler: w.rec, Interval: time.Second, Once: true, Log: w.log}
	return r.Run(ctx)
}

func (w *world) vms(service string) []hypervisor.VM {
	w.t.Helper()
	all, err := w.hv.List(w.t.Context())
	if err != nil {
		w.t.Fatalf("list vms: %v", err)
	}
	var out []hypervisor.VM
	for _, vm := range all {
		if vm.Meta.Service == service {
			out = append(out, vm)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (w *world) vmNames(service string) []string {
	var out []string
	for _, vm := range w.vms(service) {
		out = append(out, vm.Name)
	}
	return out
}

func (w *world) instances(service string) []discovery.Instance {
	w.t.Helper()
	all, err := w.reg.Instances(w.t.Context(), reconciler.Tag)
	if err != nil {
		w.t.Fatalf("consul instances: %v", err)
	}
	var out []discovery.Instance
	for _, in := range all {
		if in.Service == service {
			out = append(out, in)
		}
	}
	return out
}

// expectServing asserts that service runs exactly n VMs of version, each registered and
// passing, created at revision (any revision when it is empty).
func (w *world) expectServing(service, version, revision string, n int) {
	w.t.Helper()
	vms := w.vms(service)
	if len(vms) != n {
		w.t.Fatalf("%s: got %d VMs %v, want %d", service, len(vms), w.vmNames(service), n)
	}
	byID := map[string]discovery.Instance{}
	for _, in := range w.instances(service) {
		byID[in.ID] = in
	}
	if len(byID) != n {
		w.t.Fatalf("%s: got %d consul instances, want %d", service, len(byID), n)
	}
	for _, vm := range vms {
		in, ok := byID[vm.Name]
		switch {
		case !ok:
			w.t.Errorf("%s: VM %s has no consul instance", service, vm.Name)
		case in.Status != discovery.StatusPassing:
			w.t.Errorf("%s: instance %s is %s, want passing", service, vm.Name, in.Status)
		case in.Meta["version"] != version || in.Meta["revision"] != vm.Meta.Revision || in.Meta["spec_hash"] != vm.Meta.SpecHash:
			w.t.Errorf("%s: instance %s meta %v, want version %s revision %s spec_hash %s", service, vm.Name, in.Meta, version, revision, vm.Meta.SpecHash)
		}
		if vm.Meta.Version != version || (revision != "" && vm.Meta.Revision != revision) {
			w.t.Errorf("%s: VM %s metadata %+v, want version %s revision %s", service, vm.Name, vm.Meta, version, revision)
		}
		if !strings.HasPrefix(vm.Name, service+"-"+vm.Meta.SpecHash[:8]+"-") {
			w.t.Errorf("VM name %s does not follow <service>-<spec hash 8>-<suffix>", vm.Name)
		}
	}
	passing, err := w.reg.PassingCount(w.t.Context(), service)
	if err != nil || passing != n {
		w.t.Errorf("%s: passing count %d (err %v), want %d", service, passing, err, n)
	}
}

// expectNoTrace asserts nothing of the named VMs is left: domain, registration, files.
func (w *world) expectNoTrace(names []string) {
	w.t.Helper()
	all, _ := w.hv.List(w.t.Context())
	for _, vm := range all {
		if slices.Contains(names, vm.Name) {
			w.t.Errorf("VM %s still exists", vm.Name)
		}
	}
	ins, _ := w.reg.Instances(w.t.Context(), reconciler.Tag)
	for _, in := range ins {
		if slices.Contains(names, in.ID) {
			w.t.Errorf("consul instance %s still registered", in.ID)
		}
	}
	filepath.WalkDir(w.stateDir, func(path string, d os.DirEntry, err error) error {
		for _, n := range names {
			if err == nil && strings.Contains(d.Name(), n) {
				w.t.Errorf("file %s of removed VM %s left behind", path, n)
			}
		}
		return nil
	})
}

// watchPassing polls Consul every 100 ms like a client would and records the fewest
// passing instances seen once the service first had `floor` passing.
type passingWatch struct {
	min     atomic.Int64
	samples atomic.Int64
	stop    func()
}

func (w *world) watchPassing(service string) *passingWatch {
	pw := &passingWatch{}
	pw.min.Store(1 << 30)
	pw.stop = every(100*time.Millisecond, func(ctx context.Context) {
		if n, err := w.reg.PassingCount(ctx, service); err == nil {
			pw.samples.Add(1)
			if int64(n) < pw.min.Load() {
				pw.min.Store(int64(n))
			}
		}
	})
	return pw
}

// every runs sample at once and then every interval in the background, like a client
// polling, until the returned stop is called; stop waits for the last sample.
func every(interval time.Duration, sample func(ctx context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			sample(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}

func TestE2EDeployUpdateFailFix(t *testing.T) {
	forEachDriver(t, func(t *testing.T, w *world) {
		const svc = "e2e-web"
		src := w.source(w.repo.URL())
		web := testenv.Service{Name: svc, Version: "1", Replicas: 2, Drain: 500 * time.Millisecond}

		rev1 := w.commit(w.images.FleetYAML(web))
		if err := w.converge(src); err != nil {
			t.Fatalf("deploy v1: %v", err)
		}
		w.expectServing(svc, "1", rev1, 2)
		v1 := w.vmNames(svc)

		// No-op: a pass over a matching fleet changes nothing.
		res, err := w.rec.Pass(t.Context(), sources.Revision{Commit: rev1, Fleet: mustFleet(t, w.images.FleetYAML(web))})
		if err != nil || res.Changed || res.Err != nil {
			t.Fatalf("no-op pass: changed=%v err=%v/%v\n%s", res.Changed, err, res.Err, res.Plan)
		}

		watch := w.watchPassing(svc)
		web.Version = "2"
		rev2 := w.commit(w.images.FleetYAML(web))
		if err := w.converge(src); err != nil {
			t.Fatalf("roll out v2: %v", err)
		}
		w.expectServing(svc, "2", rev2, 2)
		w.expectNoTrace(v1)
		v2 := w.vmNames(svc)

		// v3 never becomes healthy: rolled back by healthy_deadline, v2 keeps serving.
		bad := web
		bad.Version, bad.Unhealthy, bad.HealthyDeadline = "3", true, 12*time.Second
		rev3 := w.commit(w.images.FleetYAML(bad))
		err = w.converge(src)
		var rerr *reconciler.RolloutError
		if !errors.As(err, &rerr) || !rerr.RolledBack || rerr.Revision != rev3 {
			t.Fatalf("v3: got %v, want a rolled back RolloutError at %s", err, rev3)
		}
		if got := w.vmNames(svc); !slices.Equal(got, v2) {
			t.Fatalf("after failed v3: VMs %v, want the v2 VMs %v", got, v2)
		}
		w.expectServing(svc, "2", rev2, 2)

		// The failed revision is held: passes on the same commit do not create VMs, by
		// this Drover nor by a restarted one (the failure is kept in Consul KV).
		for i := range 2 {
			if i == 1 {
				w.rec = w.newReconciler()
			}
			err = w.converge(src)
			var held *reconciler.HeldError
			if !errors.As(err, &held) {
				t.Fatalf("pass on held revision: got %v, want HeldError", err)
			}
			if got := w.vmNames(svc); !slices.Equal(got, v2) {
				t.Fatalf("held revision created VMs: %v, want %v", got, v2)
			}
		}

		web.Version = "4"
		rev4 := w.commit(w.images.FleetYAML(web))
		if err := w.converge(src); err != nil {
			t.Fatalf("roll out v4: %v", err)
		}
		w.expectServing(svc, "4", rev4, 2)
		w.expectNoTrace(v2)

		watch.stop()
		if watch.samples.Load() < 20 || watch.min.Load() < 2 {
			t.Errorf("watcher: %d samples, min passing %d; want >= 2 passing throughout", watch.samples.Load(), watch.min.Load())
		}
		t.Logf("watcher: %d samples, min passing %d", watch.samples.Load(), watch.min.Load())
	})
}

func TestE2EScaleAndPrune(t *testing.T) {
	forEachDriver(t, func(t *testing.T, w *world) {
		src := w.source(w.repo.URL())
		a := testenv.Service{Name: "e2e-scale", Version: "1", Replicas: 2}
		b := testenv.Service{Name: "e2e-prune", Version: "1", Replicas: 1}

		rev := w.commit(w.images.FleetYAML(a, b))
		if err := w.converge(src); err != nil {
			t.Fatalf("deploy: %v", err)
		}
		w.expectServing(a.Name, "1", rev, 2)
		w.expectServing(b.Name, "1", rev, 1)
		first := w.vmNames(a.Name)
		pruned := w.vmNames(b.Name)

		a.Replicas = 3
		w.commit(w.images.FleetYAML(a, b))
		if err := w.converge(src); err != nil {
			t.Fatalf("scale to 3: %v", err)
		}
		three := w.vmNames(a.Name)
		if len(three) != 3 || !isSubset(first, three) {
			t.Fatalf("scale 2->3: VMs %v, want the original %v plus one", three, first)
		}
		w.expectServing(a.Name, "1", "", 3)

		// replicas 3 -> 1 and service b removed from the fleet, in one commit.
		a.Replicas = 1
		w.commit(w.images.FleetYAML(a))
		if err := w.converge(src); err != nil {
			t.Fatalf("scale to 1 and prune: %v", err)
		}
		one := w.vmNames(a.Name)
		if len(one) != 1 || !isSubset(one, three) {
			t.Fatalf("scale 3->1: VMs %v, want one of %v", one, three)
		}
		// The oldest keeps serving; the VM added by the scale-up goes first.
		if !slices.Contains(first, one[0]) {
			t.Errorf("scale 3->1 kept %s, want one of the original %v", one[0], first)
		}
		w.expectServing(a.Name, "1", "", 1)
		w.expectNoTrace(pruned)
		if ins := w.instances(b.Name); len(ins) != 0 {
			t.Errorf("pruned service still has instances: %v", ins)
		}
	})
}

func TestE2EBadInputChangesNothing(t *testing.T) {
	forEachDriver(t, func(t *testing.T, w *world) {
		src := w.source(w.repo.URL())
		web := testenv.Service{Name: "e2e-bad", Version: "1", Replicas: 1}
		rev := w.commit(w.images.FleetYAML(web))
		if err := w.converge(src); err != nil {
			t.Fatalf("deploy: %v", err)
		}
		before := w.vmNames(web.Name)

		good := w.images.FleetYAML(web)
		cases := []struct {
			name  string
			fleet string
			want  []string // substrings of the error
		}{
			{"invalid yaml", "services:\n  - name: [oops\n", []string{"fleet.yaml:", "invalid YAML"}},
			{"unknown field", strings.Replace(good, "    replicas: 1\n", "    replicas: 1\n    replica: 2\n", 1), []string{"fleet.yaml:5:5", "replica"}},
			{"bad sha256", strings.Replace(good, w.images.Initrd.SHA256, "abc123", 1), []string{"fleet.yaml:9:", "sha256"}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				commit := w.commit(tc.fleet)
				err := w.converge(src)
				if err == nil {
					t.Fatalf("converge on %s: no error", tc.name)
				}
				for _, want := range append(tc.want, commit[:7]) {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not mention %q", err, want)
					}
				}
				if got := w.vmNames(web.Name); !slices.Equal(got, before) {
					t.Errorf("VMs changed: %v, want %v", got, before)
				}
			})
		}

		t.Run("checksum mismatch", func(t *testing.T) {
			// A valid digest that is not the file's: nothing may boot from it.
			wrong := strings.Repeat("0", 64)
			fleet := strings.Replace(strings.Replace(good, w.images.Initrd.SHA256, wrong, 1), `version: "1"`, `version: "2"`, 1)
			w.commit(fleet)
			err := w.converge(src)
			var sum *sources.ChecksumError
			if !errors.As(err, &sum) || sum.Want != wrong || sum.Got != w.images.Initrd.SHA256 {
				t.Fatalf("got %v, want a ChecksumError naming both digests", err)
			}
			if !strings.Contains(err.Error(), w.images.Initrd.URL()) {
				t.Errorf("error %q does not name the URL", err)
			}
			if got := w.vmNames(web.Name); !slices.Equal(got, before) {
				t.Errorf("VMs changed: %v, want %v", got, before)
			}
		})

		t.Run("unreachable repository", func(t *testing.T) {
			gone := w.source(filepath.Join(t.TempDir(), "no-such-repo"))
			err := w.converge(gone)
			if !errors.Is(err, sources.ErrFetch) {
				t.Fatalf("got %v, want ErrFetch", err)
			}
			if got := w.vmNames(web.Name); !slices.Equal(got, before) {
				t.Errorf("VMs changed: %v, want %v", got, before)
			}
		})

		t.Run("consul down when a rollout starts", func(t *testing.T) {
			web2 := web
			web2.Version = "2"
			w.commit(w.images.FleetYAML(web2))
			if err := w.consul.Stop(); err != nil {
				t.Fatal(err)
			}
			err := w.converge(src)
			if !errors.Is(err, discovery.ErrUnavailable) {
				t.Fatalf("got %v, want discovery.ErrUnavailable", err)
			}
			if got := w.vmNames(web.Name); !slices.Equal(got, before) {
				t.Errorf("VMs changed with consul down: %v, want %v", got, before)
			}
			// Consul back with its state lost: the healthy VM is registered again, not replaced.
			if err := w.consul.Restart(t.Context()); err != nil {
				t.Fatal(err)
			}
			w.commit(good)
			if err := w.converge(src); err != nil {
				t.Fatalf("converge after consul restart: %v", err)
			}
			if got := w.vmNames(web.Name); !slices.Equal(got, before) {
				t.Errorf("VMs replaced after consul lost its state: %v, want %v", got, before)
			}
			// A registration starts critical until its first check passes.
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			if err := w.reg.WaitPassing(ctx, web.Name, before, 0); err != nil {
				t.Fatalf("re-registered VM never passed: %v", err)
			}
			w.expectServing(web.Name, "1", rev, 1)
		})
	})
}

func mustFleet(t *testing.T, yaml string) *sources.Fleet {
	t.Helper()
	f, err := sources.Parse("fleet.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func isSubset(small, big []string) bool {
	for _, s := range small {
		if !slices.Contains(big, s) {
			return false
		}
	}
	return true
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestE2EResumedBootThatNeverPasses: Drover stops while a new VM boots; the VM never
// becomes healthy. The next run waits for it up to healthy_deadline, removes it as a
// failed boot, tries afresh, and fails the revision like any rollout that never passes.
func TestE2EResumedBootThatNeverPasses(t *testing.T) {
	w := newWorld(t, "qemu")
	svc := testenv.Service{Name: "e2e-resume", Version: "1", Replicas: 1, Unhealthy: true, HealthyDeadline: 6 * time.Second}
	w.commit(w.images.FleetYAML(svc))
	src := w.source(w.repo.URL())

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- (&reconciler.Runner{Source: src, Reconciler: w.rec, Interval: time.Second, Log: w.log}).Run(ctx)
	}()
	deadline := time.Now().Add(time.Minute)
	for len(w.vmNames(svc.Name)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no VM created within 1m")
		}
		time.Sleep(50 * time.Millisecond) // poll interval of this deadline-bounded wait
	}
	cancel() // like SIGTERM: the rollout stops between steps
	if err := <-done; err != nil {
		t.Fatalf("runner: %v", err)
	}
	first := w.vmNames(svc.Name)
	if len(first) != 1 {
		t.Fatalf("after stopping: VMs %v, want the one booting", first)
	}
	// It never answered, so the rollout had not registered it; stopping does, so
	// Consul shows every VM Drover made.
	if got := w.instances(svc.Name); len(got) != 1 || got[0].ID != first[0] {
		t.Fatalf("after stopping: registered %v, want %v", got, first)
	}

	// A new Drover (no memory of the first) resumes.
	w.rec = w.newReconciler()
	err := w.converge(src)
	var rerr *reconciler.RolloutError
	if !errors.As(err, &rerr) || !rerr.RolledBack {
		t.Fatalf("resume: got %v, want a rolled back RolloutError", err)
	}
	if got := w.vmNames(svc.Name); len(got) != 0 {
		t.Errorf("after the failed rollout: VMs %v, want none", got)
	}
	w.expectNoTrace(first)
}

// TestE2ETwoFleetsOneHost: two Drovers tracking different fleets share a libvirt host
// and a Consul agent, each with a service of the same name. The second is refused until
// its fleet file opts in to sharing the Consul service; then each manages only its own
// fleet's VMs and registrations: a pass of one never retires, prunes or deregisters
// what the other made.
func TestE2ETwoFleetsOneHost(t *testing.T) {
	a := newWorldOn(t, "libvirt", testenv.Consul(t), "fleet-a")
	b := newWorldOn(t, "libvirt", a.consul, "fleet-b")
	svc := testenv.Service{Name: "e2e-fleets", Version: "1", Replicas: 1}
	a.commit(a.images.FleetYAML(svc))
	svc.Version = "2"
	b.commit(b.images.FleetYAML(svc))
	srcA, srcB := a.source(a.repo.URL()), b.source(b.repo.URL())

	if err := a.converge(srcA); err != nil {
		t.Fatalf("deploy fleet-a: %v", err)
	}
	var foreign *reconciler.ForeignServiceError
	if err := b.converge(srcB); !errors.As(err, &foreign) {
		t.Fatalf("deploy fleet-b into fleet-a's consul service: %v, want a ForeignServiceError", err)
	}
	if vms := b.vms(svc.Name); len(vms) != 1 || vms[0].Meta.Fleet != "fleet-a" {
		t.Fatalf("after fleet-b was refused: VMs %v, want only fleet-a's", vms)
	}
	b.commit(strings.Replace(b.images.FleetYAML(svc), "    replicas: 1\n", "    replicas: 1\n    share_consul_service: true\n", 1))
	if err := b.converge(srcB); err != nil {
		t.Fatalf("deploy fleet-b sharing the consul service: %v", err)
	}
	byFleet := func() map[string][]string {
		out := map[string][]string{}
		for _, vm := range a.vms(svc.Name) {
			out[vm.Meta.Fleet] = append(out[vm.Meta.Fleet], vm.Name)
		}
		return out
	}
	deployed := byFleet()
	if len(deployed["fleet-a"]) != 1 || len(deployed["fleet-b"]) != 1 || len(deployed) != 2 {
		t.Fatalf("after both deploys: VMs by fleet %v, want one each for fleet-a and fleet-b", deployed)
	}
	for _, in := range a.instances(svc.Name) {
		want := map[string]string{deployed["fleet-a"][0]: "fleet-a", deployed["fleet-b"][0]: "fleet-b"}[in.ID]
		if in.Meta[reconciler.MetaFleet] != want || in.Status != discovery.StatusPassing {
			t.Errorf("instance %s: fleet %q status %s, want fleet %q passing", in.ID, in.Meta[reconciler.MetaFleet], in.Status, want)
		}
	}

	// Fleet a's next pass matches: it leaves fleet b's VM (another version of a
	// same-named service, beyond a's replicas) alone.
	if err := a.converge(srcA); err != nil {
		t.Fatalf("fleet-a again: %v", err)
	}
	if got := byFleet(); !reflect.DeepEqual(got, deployed) {
		t.Fatalf("after fleet-a's second pass: VMs by fleet %v, want unchanged %v", got, deployed)
	}
	if ins := a.instances(svc.Name); len(ins) != 2 {
		t.Fatalf("after fleet-a's second pass: instances %+v, want both fleets' (fleet-b's is not fleet-a's orphan)", ins)
	}

	// Fleet b empties: only its own VM and registration go.
	b.commit("services: []\n")
	if err := b.converge(srcB); err != nil {
		t.Fatalf("fleet-b emptied: %v", err)
	}
	if got := byFleet(); len(got) != 1 || !slices.Equal(got["fleet-a"], deployed["fleet-a"]) {
		t.Fatalf("after fleet-b emptied: VMs by fleet %v, want only fleet-a's %v", got, deployed["fleet-a"])
	}
	ins := a.instances(svc.Name)
	if len(ins) != 1 || ins[0].ID != deployed["fleet-a"][0] || ins[0].Status != discovery.StatusPassing {
		t.Fatalf("after fleet-b emptied: instances %+v, want fleet-a's %s passing", ins, deployed["fleet-a"][0])
	}
	b.expectNoTrace(deployed["fleet-b"])
}
