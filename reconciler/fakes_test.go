package reconciler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/sources"
)

// fakeWorld is a hypervisor, a Consul and an image cache in memory, for unit tests of
// what a pass does (the end-to-end tests run the same against libvirt, QEMU and Consul).
// A VM is healthy as soon as it exists. Every mutating call is counted, and refused
// (counted in late) once frozen says so.
type fakeWorld struct {
	mu        sync.Mutex
	vms       map[string]hypervisor.VM
	instances map[string]discovery.Instance
	foreign   []discovery.Instance // instances of other registrants, by service
	mutations []string
	// frozen, when set, reports whether a mutating call now would come from a Drover
	// that must not act; such calls are recorded in late.
	frozen func() bool
	late   []string
	// createGate, when set, is received from before each Create returns.
	createGate chan struct{}
	createErr  error
	// sweeps counts Sweep calls.
	sweeps int
	// creating and maxCreating are the Create calls in flight, now and at most.
	creating, maxCreating int
	// unhealthy are versions whose instances never pass their check.
	unhealthy map[string]bool
	// dhcpAfter, when set, is how many Lists a VM off user networking is reported
	// without an address (as a DHCP guest is) before it gets one; negative is never.
	dhcpAfter int
	lists     int
}

func newFakeWorld() *fakeWorld {
	return &fakeWorld{vms: map[string]hypervisor.VM{}, instances: map[string]discovery.Instance{}}
}

var _ Hypervisor = (*fakeWorld)(nil)
var _ Registrar = (*fakeWorld)(nil)
var _ Health = (*fakeWorld)(nil)

func (w *fakeWorld) mutate(op string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mutations = append(w.mutations, op)
	if w.frozen != nil && w.frozen() {
		w.late = append(w.late, op)
	}
}

func (w *fakeWorld) Create(ctx context.Context, spec hypervisor.Spec) (hypervisor.VM, error) {
	w.mutate("create " + spec.Name)
	w.mu.Lock()
	w.creating++
	w.maxCreating = max(w.maxCreating, w.creating)
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.creating--
		w.mu.Unlock()
	}()
	if w.createGate != nil {
		select {
		case <-w.createGate:
		case <-ctx.Done():
			return hypervisor.VM{}, ctx.Err()
		}
	}
	if w.createErr != nil {
		return hypervisor.VM{}, w.createErr
	}
	vm := hypervisor.VM{Name: spec.Name, State: hypervisor.StateRunning, Address: "127.0.0.1", Port: 1, Meta: spec.Meta}
	if w.dhcpAfter != 0 && spec.Network.Mode != hypervisor.NetworkUser {
		vm.Address, vm.AddressSources = "", []string{"the host's neighbour table"}
	}
	w.mu.Lock()
	w.vms[vm.Name] = vm
	w.mu.Unlock()
	return vm, nil
}

func (w *fakeWorld) List(context.Context) ([]hypervisor.VM, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lists++
	out := make([]hypervisor.VM, 0, len(w.vms))
	for _, vm := range w.vms {
		if vm.Address == "" && w.dhcpAfter > 0 && w.lists > w.dhcpAfter {
			vm.Address = "198.18.0.50"
			w.vms[vm.Name] = vm
		}
		out = append(out, vm)
	}
	return out, nil
}

func (w *fakeWorld) Shutdown(_ context.Context, name string, _ time.Duration) error {
	w.mutate("shutdown " + name)
	return nil
}

func (w *fakeWorld) Destroy(_ context.Context, name string) error {
	w.mutate("destroy " + name)
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.vms, name)
	return nil
}

// Sweep is counted apart from the other mutations (every pass that may act sweeps),
// and is late like them when the Drover must not act.
func (w *fakeWorld) Sweep(context.Context) ([]string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sweeps++
	if w.frozen != nil && w.frozen() {
		w.late = append(w.late, "sweep")
	}
	return nil, nil
}

func (w *fakeWorld) Register(_ context.Context, reg discovery.Registration) error {
	w.mutate("register " + reg.ID)
	w.mu.Lock()
	defer w.mu.Unlock()
	status := discovery.StatusPassing
	if w.unhealthy[reg.Meta["version"]] {
		status = discovery.StatusCritical
	}
	w.instances[reg.ID] = discovery.Instance{ID: reg.ID, Service: reg.Service, Address: reg.Address, Port: reg.Port,
		Tags: reg.Tags, Meta: reg.Meta, Status: status}
	return nil
}

func (w *fakeWorld) Deregister(_ context.Context, id string) error {
	w.mutate("deregister " + id)
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.instances, id)
	return nil
}

func (w *fakeWorld) SetMaintenance(_ context.Context, id string, on bool, _ string) error {
	w.mutate("maintenance " + id)
	w.mu.Lock()
	defer w.mu.Unlock()
	in, ok := w.instances[id]
	if !ok {
		return discovery.ErrNotFound
	}
	if on {
		in.Status = discovery.StatusMaintenance
	}
	w.instances[id] = in
	return nil
}

func (w *fakeWorld) Ping(context.Context) error { return nil }

func (w *fakeWorld) Instances(_ context.Context, tag string) ([]discovery.Instance, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []discovery.Instance
	for _, in := range w.instances {
		if slices.Contains(in.Tags, tag) {
			out = append(out, in)
		}
	}
	return out, nil
}

func (w *fakeWorld) ServiceInstances(_ context.Context, service string) ([]discovery.Instance, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []discovery.Instance
	for _, in := range append(slices.Collect(mapValues(w.instances)), w.foreign...) {
		if in.Service == service {
			out = append(out, in)
		}
	}
	return out, nil
}

func mapValues(m map[string]discovery.Instance) func(func(discovery.Instance) bool) {
	return func(yield func(discovery.Instance) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

func (w *fakeWorld) WaitPassing(ctx context.Context, _ string, ids []string, _ time.Duration) error {
	for {
		w.mu.Lock()
		ok := true
		for _, id := range ids {
			if w.instances[id].Status != discovery.StatusPassing {
				ok = false
			}
		}
		w.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (w *fakeWorld) Probe(_ context.Context, reg discovery.Registration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.unhealthy[reg.Meta["version"]] {
		return errFake
	}
	return nil
}

// Get resolves any artifact to a path named after its digest.
func (w *fakeWorld) Get(_ context.Context, a sources.Artifact) (string, error) {
	return "/images/" + a.SHA256, nil
}

// count is how many VMs of service at version exist.
func (w *fakeWorld) count(service, version string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, vm := range w.vms {
		if vm.Meta.Service == service && vm.Meta.Version == version {
			n++
		}
	}
	return n
}

func (w *fakeWorld) mutationCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.mutations)
}

// fakeReconciler wires a Reconciler to w.
func fakeReconciler(t *testing.T, w *fakeWorld, mod func(*Config)) *Reconciler {
	t.Helper()
	cfg := Config{Fleet: "test", Hypervisor: w, Registrar: w, Health: w, Images: w, ProbeInterval: time.Millisecond, PruneDrain: time.Millisecond,
		Budget: Budget{MaxVMs: 1000, MaxMemoryMiB: 1 << 20, MaxCPUs: 1000}}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// svc is a blue-green service of n replicas at version with drain.
func svc(name, version string, n int, drain time.Duration) sources.Service {
	return sources.Service{
		Name: name, Version: version, Replicas: n, CPUs: 1, MemoryMiB: 128,
		Image: sources.Image{Kernel: &sources.Artifact{URL: "file:///k", SHA256: fmt.Sprintf("%064d", len(version))}},
		Port:  80, Check: sources.Check{HTTP: "/healthz", Interval: time.Second, Timeout: time.Second},
		Update: sources.Update{Strategy: sources.StrategyBlueGreen, HealthyDeadline: 10 * time.Second, Drain: drain,
			ShutdownTimeout: time.Second, AutoRollback: true},
	}
}

func rev(commit string, services ...sources.Service) sources.Revision {
	return sources.Revision{Commit: commit, Fleet: &sources.Fleet{Services: services}}
}

// revSource is a Source whose revision the test changes.
type revSource struct {
	mu  sync.Mutex
	rev sources.Revision
	// err, when set, is what every Read returns (a repository that cannot be read);
	// reads counts the calls.
	err   error
	reads int
}

func (s *revSource) Read(context.Context) (sources.Revision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	if s.err != nil {
		return sources.Revision{}, s.err
	}
	return s.rev, nil
}

func (s *revSource) fail(err error) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
	return s.reads
}

func (s *revSource) readCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

func (s *revSource) set(r sources.Revision) {
	s.mu.Lock()
	s.rev = r
	s.mu.Unlock()
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var errFake = errors.New("fake failure")
