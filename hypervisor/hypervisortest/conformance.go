// Package hypervisortest is the conformance suite every hypervisor driver must pass:
// the behaviour the reconciler relies on, checked the same way against libvirt, the
// direct QEMU driver and libvirt's test driver. A driver's tests call Conformance
// with a Harness that says how to make the driver and how to look behind its back.
//
// The package builds no test environment of its own: the guest images, the kernel
// command line builders and the skip-or-fail policy for missing tools come in through
// the Harness, so it does not depend on testenv (whose callers do).
package hypervisortest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-dev/drover/hypervisor"
)

// Driver is what the suite needs from a hypervisor driver: the reconciler's view of one.
type Driver interface {
	Create(ctx context.Context, spec hypervisor.Spec) (hypervisor.VM, error)
	List(ctx context.Context) ([]hypervisor.VM, error)
	Get(ctx context.Context, name string) (hypervisor.VM, error)
	Shutdown(ctx context.Context, name string, timeout time.Duration) error
	Destroy(ctx context.Context, name string) error
}

// Images are the guest files the suite boots. With Harness.RunsGuests, Kernel and
// Initrd must boot a guest that serves GET /healthz on GuestPort with the version
// given by Cmdline, powers off on the ACPI power button, and boots with ACPI off
// when "acpi=off" is appended (then ignoring the button); testenv's guest does.
// Without it, they need only exist.
type Images struct {
	Kernel    string
	Initrd    string
	Cmdline   func(version string) string
	GuestPort int
	// Reach returns the kernel command line words that make the guest, once its
	// network is up, try to open a TCP connection to addr ("IP:PORT") and serve the
	// outcome on GET /reach: "reached" if the peer sent the line "drover-reach", else
	// "unreachable". Needed with RunsGuests.
	Reach func(addr string) string
	// Disk, when set, is a raw golden disk that boots without a kernel under both
	// firmwares and, with RunsGuests, serves /healthz on GuestPort answering the
	// firmware that booted it ("bios" or "uefi"); testenv.TinyDisk is one. Empty skips
	// the disk boot checks.
	Disk string
}

// Env is one driver on fresh state plus the hooks that look behind its back.
type Env struct {
	Driver Driver
	// Traces lists what remains of a VM outside the driver's API: its process or
	// domain, overlay, state files. Empty once the VM is destroyed.
	Traces func(name string) []string
	// MakeForeign creates a VM or state entry of that name that is not Drover's,
	// and removes it when t ends.
	MakeForeign func(t *testing.T, name string)
	// KillOutOfBand stops a VM's process without the driver (kill -9, or the
	// hypervisor's own hard stop). Nil skips the check.
	KillOutOfBand func(t *testing.T, name string)
	// EditOutOfBand changes the memory of a running VM without the driver, as an
	// operator would with virsh edit or by restarting its QEMU by hand; the VM keeps
	// Drover's metadata. Nil skips the drift check.
	EditOutOfBand func(t *testing.T, name string)
	// Disks lists the disks the hypervisor has attached to a VM (its live definition
	// or QMP's query-block), for the disk boot checks.
	Disks func(t *testing.T, name string) []AttachedDisk
}

// Harness says how to run the suite against one driver.
type Harness struct {
	// New makes a driver on fresh state for t, closed when t ends.
	New func(t *testing.T) Env
	// Images are the guest files to boot.
	Images Images
	// RunsGuests: VMs really boot, so health, graceful and forced shutdown are checked.
	RunsGuests bool
	// NamePrefix starts every VM name; random if empty. Drivers whose state is shared
	// between runs (a system libvirtd) need names no other run uses.
	NamePrefix string
	// BootTimeout bounds the wait for a guest's /healthz; 2 minutes if zero.
	BootTimeout time.Duration
	// Unavailable stops a test whose tool is missing here (qemu-img): a skip with
	// the reason locally, a failure where everything must run. testenv.Unavailable
	// does that; nil skips.
	Unavailable func(t testing.TB, format string, args ...any)
}

// Conformance runs the suite. Subtests share nothing but the harness; each cleans up
// what it made even when it fails.
func Conformance(t *testing.T, h Harness) {
	if h.NamePrefix == "" {
		h.NamePrefix = "ct" + randomHex(t, 3)
	}
	if h.BootTimeout == 0 {
		h.BootTimeout = 2 * time.Minute
	}
	if h.Images.GuestPort == 0 {
		t.Fatal("conformance harness: Images.GuestPort is not set")
	}
	if h.Images.Cmdline == nil {
		t.Fatal("conformance harness: Images.Cmdline is not set")
	}
	if h.RunsGuests && h.Images.Reach == nil {
		t.Fatal("conformance harness: RunsGuests without Images.Reach")
	}
	if h.Unavailable == nil {
		h.Unavailable = func(t testing.TB, format string, args ...any) {
			t.Helper()
			t.Skipf("skipping: "+format, args...)
		}
	}
	s := &suite{h: h}
	t.Run("UnknownVM", s.unknownVM)
	t.Run("InvalidSpec", s.invalidSpec)
	t.Run("Foreign", s.foreign)
	t.Run("Lifecycle", s.lifecycle)
	t.Run("DestroyRunning", s.destroyRunning)
	t.Run("Drift", s.drift)
	t.Run("UserNetworkCannotReachHost", s.userNetworkIsolated)
	t.Run("DiskBoot", s.diskBoot)
}

type suite struct{ h Harness }

func (s *suite) name(suffix string) string { return s.h.NamePrefix + "-" + suffix }

// spec is a kernel-booted, user-networked VM reporting version on /healthz.
func (s *suite) spec(name, version string) hypervisor.Spec {
	return hypervisor.Spec{
		Name:      name,
		CPUs:      1,
		MemoryMiB: 128,
		Kernel:    s.h.Images.Kernel,
		Initrd:    s.h.Images.Initrd,
		Cmdline:   s.h.Images.Cmdline(version),
		Network:   hypervisor.Network{Mode: hypervisor.NetworkUser},
		GuestPort: s.h.Images.GuestPort,
		Meta: hypervisor.Metadata{
			Fleet:    "conformance-fleet",
			Service:  "conf",
			SpecHash: "c0ffee" + strings.Repeat("0", 58),
			Revision: "rev-" + version,
			Version:  version,
			// Not on a whole second and not in UTC: drivers store seconds in UTC.
			Created: time.Date(2025, 11, 25, 21, 30, 15, 123456789, time.FixedZone("CET", 3600)),
		},
	}
}

// wantMeta is what a driver reports back for spec's metadata.
func wantMeta(spec hypervisor.Spec) hypervisor.Metadata {
	m := spec.Meta
	m.Created = m.Created.UTC().Truncate(time.Second)
	return m
}

func (s *suite) unknownVM(t *testing.T) {
	env := s.h.New(t)
	name := s.name("nosuch")
	checkErrors(t, env.Driver, name, hypervisor.ErrNotFound)
}

// checkErrors wants every call on name to fail with want and name the VM.
func checkErrors(t *testing.T, d Driver, name string, want error) {
	t.Helper()
	ctx := t.Context()
	calls := []struct {
		op   string
		call func() error
	}{
		{"Get", func() error { _, err := d.Get(ctx, name); return err }},
		{"Shutdown", func() error { return d.Shutdown(ctx, name, time.Second) }},
		{"Destroy", func() error { return d.Destroy(ctx, name) }},
	}
	for _, c := range calls {
		err := c.call()
		if !errors.Is(err, want) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s(%s): want %v naming the vm, got %v", c.op, name, want, err)
		}
	}
}

func (s *suite) invalidSpec(t *testing.T) {
	env := s.h.New(t)
	missing := filepath.Join(t.TempDir(), "no-such-kernel")
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name   string
		ctx    context.Context
		mutate func(*hypervisor.Spec)
	}{
		{"zero-cpus", t.Context(), func(s *hypervisor.Spec) { s.CPUs = 0 }},
		{"no-memory", t.Context(), func(s *hypervisor.Spec) { s.MemoryMiB = 0 }},
		{"nothing-to-boot", t.Context(), func(s *hypervisor.Spec) { s.Kernel, s.Initrd, s.Cmdline = "", "", "" }},
		{"missing-kernel", t.Context(), func(s *hypervisor.Spec) { s.Kernel = missing }},
		{"no-guest-port", t.Context(), func(s *hypervisor.Spec) { s.GuestPort = 0 }},
		{"no-service", t.Context(), func(s *hypervisor.Spec) { s.Meta.Service = "" }},
		{"no-spec-hash", t.Context(), func(s *hypervisor.Spec) { s.Meta.SpecHash = "" }},
		{"no-network-mode", t.Context(), func(s *hypervisor.Spec) { s.Network.Mode = "" }},
		{"canceled", canceled, func(*hypervisor.Spec) {}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := s.name("bad" + strconv.Itoa(i))
			spec := s.spec(name, "bad")
			tt.mutate(&spec)
			DestroyAtEnd(t, env.Driver, name)
			vm, err := env.Driver.Create(tt.ctx, spec)
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("Create(%s): want an error naming the vm, got vm %+v, err %v", tt.name, vm, err)
			}
			if got := env.Traces(name); len(got) > 0 {
				t.Errorf("after failed Create: want no traces, got %q", got)
			}
			if _, err := env.Driver.Get(t.Context(), name); !errors.Is(err, hypervisor.ErrNotFound) {
				t.Errorf("Get after failed Create: want ErrNotFound, got %v", err)
			}
		})
	}
}

func (s *suite) foreign(t *testing.T) {
	env := s.h.New(t)
	ctx := t.Context()
	name := s.name("foreign")
	env.MakeForeign(t, name)
	before := env.Traces(name)
	if len(before) == 0 {
		t.Fatalf("Traces(%s) of a foreign vm: want something, got nothing (the hook cannot see it)", name)
	}
	vms, err := env.Driver.List(ctx)
	if err != nil {
		t.Fatalf("List with a foreign vm present: want no error, got %v", err)
	}
	if vm, ok := find(vms, name); ok {
		t.Errorf("List: want the foreign %s left out, got %+v", name, vm)
	}
	checkErrors(t, env.Driver, name, hypervisor.ErrNotManaged)
	spec := s.spec(name, "foreign")
	if vm, err := env.Driver.Create(ctx, spec); err == nil {
		t.Errorf("Create over a foreign vm of the same name: want an error, got %+v", vm)
	}
	if after := env.Traces(name); !slices.Equal(before, after) {
		t.Errorf("foreign %s after List, Get, Shutdown, Destroy, Create: want untouched\nwant %q\ngot  %q", name, before, after)
	}
}

// vmCase is one VM of the lifecycle test.
type vmCase struct {
	key  string
	spec hypervisor.Spec
	vm   hypervisor.VM // as Create returned it
}

func (s *suite) lifecycle(t *testing.T) {
	env := s.h.New(t)
	d := env.Driver
	ctx := t.Context()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		s.h.Unavailable(t, "qemu-img not installed (install qemu-utils)")
	}
	golden := MakeGolden(t, "qcow2")
	goldenSum := SHA256File(t, golden)

	// Three boot modes at once, booting in parallel: kernel+initrd+cmdline; the same
	// with a disk overlay, and ACPI off so only a forced stop ends it; disk only.
	a := &vmCase{key: "kernel", spec: s.spec(s.name("a"), "a-1")}
	b := &vmCase{key: "kernel+disk", spec: s.spec(s.name("b"), "b-1")}
	b.spec.Cmdline += " acpi=off"
	b.spec.Disk = golden
	c := &vmCase{key: "disk", spec: s.spec(s.name("c"), "c-1")}
	c.spec.Kernel, c.spec.Initrd, c.spec.Cmdline = "", "", ""
	c.spec.Disk = golden
	cases := []*vmCase{a, b, c}

	var wg sync.WaitGroup
	errs := make([]error, len(cases))
	for i, vc := range cases {
		DestroyAtEnd(t, d, vc.spec.Name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			vc.vm, errs[i] = d.Create(ctx, vc.spec)
		}()
	}
	wg.Wait()
	for i, vc := range cases {
		if errs[i] != nil {
			t.Fatalf("Create %s (%s): %v", vc.spec.Name, vc.key, errs[i])
		}
	}

	t.Run("CreateReports", func(t *testing.T) {
		ports := map[int]string{}
		for _, vc := range cases {
			vm := vc.vm
			if vm.Name != vc.spec.Name || vm.Meta != wantMeta(vc.spec) {
				t.Errorf("Create %s: want name %s meta %+v, got %s %+v", vc.key, vc.spec.Name, wantMeta(vc.spec), vm.Name, vm.Meta)
			}
			if vm.State != hypervisor.StateRunning {
				t.Errorf("Create %s: want state %s, got %s", vc.key, hypervisor.StateRunning, vm.State)
			}
			if vm.Address != "127.0.0.1" || vm.Port < 1 || vm.Port > 65535 {
				t.Errorf("Create %s: want 127.0.0.1:<host port>, got %s:%d", vc.key, vm.Address, vm.Port)
			}
			if other, dup := ports[vm.Port]; dup {
				t.Errorf("Create %s: host port %d already forwarded to %s", vc.key, vm.Port, other)
			}
			ports[vm.Port] = vm.Name
			if len(env.Traces(vm.Name)) == 0 {
				t.Errorf("Traces(%s) of a created vm: want something, got nothing (the hook cannot see it)", vm.Name)
			}
		}
	})

	t.Run("ListAndGetRoundTrip", func(t *testing.T) {
		vms, err := d.List(ctx)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		for _, vc := range cases {
			listed, ok := find(vms, vc.spec.Name)
			if !ok || !sameVM(listed, vc.vm) {
				t.Errorf("List entry for %s:\nwant %+v\ngot  %+v (found %v)", vc.key, vc.vm, listed, ok)
			}
			got, err := d.Get(ctx, vc.spec.Name)
			if err != nil || !sameVM(got, vc.vm) {
				t.Errorf("Get %s:\nwant %+v\ngot  %+v, %v", vc.key, vc.vm, got, err)
			}
		}
	})

	t.Run("CreateExistingRefused", func(t *testing.T) {
		if vm, err := d.Create(ctx, a.spec); err == nil || !strings.Contains(err.Error(), a.spec.Name) {
			t.Errorf("Create of an existing name: want an error naming it, got %+v, %v", vm, err)
		}
		if got, err := d.Get(ctx, a.spec.Name); err != nil || !sameVM(got, a.vm) {
			t.Errorf("Get after a refused Create: want the vm untouched\nwant %+v\ngot  %+v, %v", a.vm, got, err)
		}
	})

	if s.h.RunsGuests {
		t.Run("PortForwardReachable", func(t *testing.T) {
			var hw sync.WaitGroup
			for _, vc := range []*vmCase{a, b} {
				hw.Add(1)
				go func() {
					defer hw.Done()
					if err := waitHealthy(ctx, vc.vm, vc.spec.Meta.Version, s.h.BootTimeout); err != nil {
						t.Errorf("%s (%s): %v", vc.spec.Name, vc.key, err)
					}
				}()
			}
			hw.Wait()
		})
	}

	t.Run("GracefulShutdown", func(t *testing.T) {
		timeout := time.Minute
		start := time.Now()
		if err := d.Shutdown(ctx, a.spec.Name, timeout); err != nil {
			t.Fatalf("Shutdown(%s, %v): %v", a.spec.Name, timeout, err)
		}
		// A guest that took the power button is off before the timeout; only a
		// forced stop ends at it.
		if took := time.Since(start); took >= timeout {
			t.Errorf("Shutdown of a guest that powers off on ACPI: want it off before the %v timeout, took %v", timeout, took)
		}
		checkOff(t, d, a, hypervisor.StateShutoff)
		if err := d.Shutdown(ctx, a.spec.Name, time.Second); err != nil {
			t.Errorf("Shutdown of a vm already off: want nil, got %v", err)
		}
	})

	if s.h.RunsGuests {
		t.Run("ForcedShutdown", func(t *testing.T) {
			timeout := 2 * time.Second
			start := time.Now()
			if err := d.Shutdown(ctx, b.spec.Name, timeout); err != nil {
				t.Fatalf("Shutdown(%s, %v): %v", b.spec.Name, timeout, err)
			}
			took := time.Since(start)
			// The guest ignores ACPI, so only the forced stop after the timeout
			// can have ended it; it must come promptly after.
			if took < timeout || took > timeout+30*time.Second {
				t.Errorf("Shutdown of a guest ignoring ACPI with timeout %v: want it forced off at the timeout, took %v", timeout, took)
			}
			checkOff(t, d, b, hypervisor.StateShutoff)
		})
	}

	if env.KillOutOfBand != nil {
		t.Run("DiedOutOfBand", func(t *testing.T) {
			env.KillOutOfBand(t, c.spec.Name)
			vm, err := waitState(ctx, d, c.spec.Name, 30*time.Second, func(st hypervisor.State) bool {
				return st == hypervisor.StateCrashed || st == hypervisor.StateShutoff
			})
			if err != nil {
				t.Fatalf("List after %s was killed out of band: %v", c.spec.Name, err)
			}
			if vm.Meta != wantMeta(c.spec) {
				t.Errorf("List after kill: want meta kept %+v, got %+v", wantMeta(c.spec), vm.Meta)
			}
		})
	}

	t.Run("GoldenUntouched", func(t *testing.T) {
		if got := SHA256File(t, golden); got != goldenSum {
			t.Errorf("golden disk %s: want sha256 %s (never written), got %s", golden, goldenSum, got)
		}
	})

	t.Run("DestroyRemovesEveryTrace", func(t *testing.T) {
		for _, vc := range cases {
			name := vc.spec.Name
			if err := d.Destroy(ctx, name); err != nil {
				t.Errorf("Destroy %s (%s): %v", name, vc.key, err)
				continue
			}
			if got := env.Traces(name); len(got) > 0 {
				t.Errorf("after Destroy %s (%s): want no traces, got %q", name, vc.key, got)
			}
			checkErrors(t, d, name, hypervisor.ErrNotFound)
		}
		vms, err := d.List(ctx)
		if err != nil {
			t.Fatalf("List after Destroy: %v", err)
		}
		for _, vc := range cases {
			if vm, ok := find(vms, vc.spec.Name); ok {
				t.Errorf("List after Destroy: want %s gone, got %+v", vc.spec.Name, vm)
			}
		}
		if got := SHA256File(t, golden); got != goldenSum {
			t.Errorf("golden disk after Destroy: want sha256 %s, got %s", goldenSum, got)
		}
	})
}

// destroyRunning destroys a VM that is still running, which is what a failed rollout
// and prune do.
func (s *suite) destroyRunning(t *testing.T) {
	env := s.h.New(t)
	ctx := t.Context()
	spec := s.spec(s.name("d"), "d-1")
	DestroyAtEnd(t, env.Driver, spec.Name)
	vm, err := env.Driver.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if vm.State != hypervisor.StateRunning {
		t.Fatalf("Create: want running, got %s", vm.State)
	}
	if err := env.Driver.Destroy(ctx, spec.Name); err != nil {
		t.Fatalf("Destroy of a running vm: %v", err)
	}
	if got := env.Traces(spec.Name); len(got) > 0 {
		t.Errorf("after Destroy of a running vm: want no traces, got %q", got)
	}
	checkErrors(t, env.Driver, spec.Name, hypervisor.ErrNotFound)
}

// drift: a VM is reported as created until someone changes it behind Drover's back,
// and then the change is named.
func (s *suite) drift(t *testing.T) {
	env := s.h.New(t)
	if env.EditOutOfBand == nil {
		t.Skip("the harness has no EditOutOfBand hook")
	}
	ctx := t.Context()
	edited := s.spec(s.name("e"), "e-1")
	fresh := s.spec(s.name("f"), "f-1")
	for _, spec := range []hypervisor.Spec{edited, fresh} {
		DestroyAtEnd(t, env.Driver, spec.Name)
		vm, err := env.Driver.Create(ctx, spec)
		if err != nil {
			t.Fatalf("Create %s: %v", spec.Name, err)
		}
		if len(vm.Drift) > 0 {
			t.Errorf("Create %s: want no drift, got %q", spec.Name, vm.Drift)
		}
	}
	listed := func() (hypervisor.VM, hypervisor.VM) {
		t.Helper()
		vms, err := env.Driver.List(ctx)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		e, ok1 := find(vms, edited.Name)
		f, ok2 := find(vms, fresh.Name)
		if !ok1 || !ok2 {
			t.Fatalf("List: want %s and %s, got %+v", edited.Name, fresh.Name, vms)
		}
		return e, f
	}
	if e, f := listed(); len(e.Drift)+len(f.Drift) > 0 {
		t.Errorf("List of fresh vms: want no drift, got %q and %q", e.Drift, f.Drift)
	}

	env.EditOutOfBand(t, edited.Name)
	e, f := listed()
	if !slices.ContainsFunc(e.Drift, func(line string) bool { return strings.HasPrefix(line, "memory") }) {
		t.Errorf("List after the memory of %s was changed out of band: want a drift line naming memory, got %q", edited.Name, e.Drift)
	}
	if len(f.Drift) > 0 {
		t.Errorf("List: want the untouched %s without drift, got %q", fresh.Name, f.Drift)
	}
	if e.Meta != wantMeta(edited) {
		t.Errorf("List after the edit: want meta kept %+v, got %+v", wantMeta(edited), e.Meta)
	}
	if got, err := env.Driver.Get(ctx, edited.Name); err != nil || !slices.Equal(got.Drift, e.Drift) {
		t.Errorf("Get %s: want the drift List reports %q, got %q, %v", edited.Name, e.Drift, got.Drift, err)
	}
	t.Logf("drift reported: %q", e.Drift)

	if err := env.Driver.Destroy(ctx, edited.Name); err != nil {
		t.Fatalf("Destroy of a drifted vm: %v", err)
	}
	if got := env.Traces(edited.Name); len(got) > 0 {
		t.Errorf("after Destroy of a drifted vm: want no traces, got %q", got)
	}
}

// checkOff wants a VM listed, with its metadata, in state want.
func checkOff(t *testing.T, d Driver, vc *vmCase, want hypervisor.State) {
	t.Helper()
	got, err := d.Get(t.Context(), vc.spec.Name)
	if err != nil {
		t.Fatalf("Get %s after Shutdown: %v", vc.spec.Name, err)
	}
	if got.State != want || got.Meta != wantMeta(vc.spec) {
		t.Errorf("Get %s after Shutdown: want state %s with meta %+v, got %s with %+v", vc.spec.Name, want, wantMeta(vc.spec), got.State, got.Meta)
	}
	vms, err := d.List(t.Context())
	if err != nil {
		t.Fatalf("List after Shutdown: %v", err)
	}
	if listed, ok := find(vms, vc.spec.Name); !ok || listed.State != want {
		t.Errorf("List after Shutdown of %s: want it listed %s, got %+v (found %v)", vc.spec.Name, want, listed, ok)
	}
}

// waitState polls List until name's state satisfies ok.
func waitState(ctx context.Context, d Driver, name string, limit time.Duration, ok func(hypervisor.State) bool) (hypervisor.VM, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last hypervisor.VM
	for {
		vms, err := d.List(ctx)
		if err == nil {
			vm, found := find(vms, name)
			if !found {
				return hypervisor.VM{}, fmt.Errorf("%s not listed", name)
			}
			if ok(vm.State) {
				return vm, nil
			}
			last = vm
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("state of %s still %s after %v (last list error: %v)", name, last.State, limit, err)
		case <-tick.C:
		}
	}
}

// WaitHealthy polls the VM's forwarded /healthz until it answers 200 with version.
func WaitHealthy(ctx context.Context, vm hypervisor.VM, version string, limit time.Duration) error {
	return waitHealthy(ctx, vm, version, limit)
}

func waitHealthy(ctx context.Context, vm hypervisor.VM, version string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	url := "http://" + vm.Address + ":" + strconv.Itoa(vm.Port) + "/healthz"
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("GET %s: %w", url, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			got := strings.TrimSpace(string(body))
			if resp.StatusCode == http.StatusOK && got == version {
				return nil
			}
			last = fmt.Sprintf("status %d body %q", resp.StatusCode, got)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("GET %s: want 200 %q within %v, last got %s", url, version, limit, last)
		case <-tick.C:
		}
	}
}

func find(vms []hypervisor.VM, name string) (hypervisor.VM, bool) {
	for _, vm := range vms {
		if vm.Name == name {
			return vm, true
		}
	}
	return hypervisor.VM{}, false
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// sameVM compares two observations; no drift and an empty drift list are the same.
func sameVM(a, b hypervisor.VM) bool {
	return a.Name == b.Name && a.Meta == b.Meta && a.State == b.State &&
		a.Address == b.Address && a.Port == b.Port && slices.Equal(a.Drift, b.Drift)
}
