// Package qemu runs Drover's VMs as qemu-system-x86_64 processes it starts itself, with
// no libvirtd, and controls them over QMP (go-qemu's qmp). Each process is detached
// from Drover's session, so VMs outlive the Drover that started them; everything a
// restarted Drover needs to find and manage a VM lives in one directory per VM under
// StateDir/qemu: metadata.json, the QMP socket, the pid file and the disk overlay. A
// directory without readable Drover metadata is never touched.
//
// A VM's serial console is kept in a ring of consoleLogSize bytes in its QEMU's memory
// (QMP ringbuf-read on device console0 takes it out); Shutdown saves it to
// console.log, so a VM stopped by Drover keeps its last words.
//
// Networks: user-mode networking (the guest port forwarded to 127.0.0.1), or a host
// bridge, on which the driver makes each VM a tap of its own over netlink (root or
// CAP_NET_ADMIN) and removes it with the VM and in Sweep. libvirt networks are
// libvirt's: use the libvirt driver for them.
package qemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/internal/atomicfile"
)

// Errors besides hypervisor's sentinels.
var (
	// ErrInvalidSpec: Create was given a spec that cannot be created; nothing was made.
	ErrInvalidSpec = hypervisor.ErrInvalidSpec
	// ErrExists: Create was given the name of a VM (or foreign entry) that exists.
	ErrExists = errors.New("vm already exists")
	// ErrUnsupportedNetwork: the spec asks for a libvirt network.
	ErrUnsupportedNetwork = errors.New("network mode not supported by the qemu driver (user and bridge only; a libvirt network needs the libvirt driver)")
)

// Accelerators for Config.Accel.
const (
	AccelAuto = ""    // KVM when usable, else TCG
	AccelKVM  = "kvm" // force KVM
	AccelTCG  = "tcg" // force TCG
)

// Config says where the driver works and with which binaries.
type Config struct {
	StateDir string // VMs live under StateDir/qemu/<name>
	QEMU     string // qemu-system-x86_64 binary; looked up in PATH if empty
	QEMUImg  string // qemu-img binary; looked up in PATH if empty
	Accel    string // AccelAuto, AccelKVM or AccelTCG
}

// Driver creates, observes and removes Drover's QEMU processes. It is safe for
// concurrent use; calls on the same VM name are serialised.
type Driver struct {
	root    string // StateDir/qemu, absolute
	qemu    string
	qemuImg string
	accel   string
	log     *slog.Logger

	// pickPort and now are fields so tests can take a port away and fix the clock,
	// consoleSize so they can fill a console ring quickly.
	pickPort    func() (int, error)
	now         func() time.Time
	consoleSize int // bytes of console kept: consoleLogSize

	locks hypervisor.NameLocks
	ports hypervisor.HostPorts // host ports handed to Creates in flight

	mu       sync.Mutex
	creating map[string]bool   // names whose Create is in flight
	problems map[string]string // entry path → what is wrong with it, from the last scan
}

// problem is a state directory entry the driver cannot manage: it is reported and left
// exactly as it is.
type problem struct {
	Name string // entry name under StateDir/qemu
	Path string
	Err  string
}

// New checks for the QEMU binaries, prepares StateDir/qemu and reads what is there, so
// a restarted Drover has the full view of the VMs it started before.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Driver, error) {
	if log == nil {
		return nil, fmt.Errorf("qemu driver: no logger")
	}
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("qemu driver: no state directory")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("qemu driver: %w", err)
	}
	qemu, err := findBinary(cfg.QEMU, "qemu-system-x86_64", "qemu-system-x86")
	if err != nil {
		return nil, err
	}
	qemuImg, err := findBinary(cfg.QEMUImg, "qemu-img", "qemu-utils")
	if err != nil {
		return nil, err
	}
	accel, err := chooseAccel(cfg.Accel)
	if err != nil {
		return nil, err
	}
	stateDir, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("qemu driver: state directory %s: %w", cfg.StateDir, err)
	}
	root := filepath.Join(stateDir, "qemu")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("qemu driver: create state directory: %w", err)
	}
	d := &Driver{
		root:        root,
		qemu:        qemu,
		qemuImg:     qemuImg,
		accel:       accel,
		log:         log.With("driver", "qemu"),
		pickPort:    hypervisor.FreeLocalPort,
		now:         time.Now,
		consoleSize: consoleLogSize,
		creating:    map[string]bool{},
		problems:    map[string]string{},
	}
	vms, err := d.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("qemu driver: %w", err)
	}
	d.log.Info("qemu driver ready", "accel", accel, "state_dir", root, "vms", len(vms), "problems", len(d.problemEntries()))
	return d, nil
}

// findBinary resolves a configured or default binary, naming the Debian package that
// provides it when it is missing: the first thing a new user needs to know.
func findBinary(configured, def, pkg string) (string, error) {
	name := configured
	if name == "" {
		name = def
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("qemu driver: %s not found (install the Debian package %s): %w", name, pkg, err)
	}
	return p, nil
}

func chooseAccel(accel string) (string, error) {
	switch accel {
	case AccelKVM, AccelTCG:
		return accel, nil
	case AccelAuto:
		// hypervisor decides for every driver, including hosts whose /dev/kvm
		// opens but cannot run a stock guest kernel.
		if hypervisor.KVMAvailable() {
			return AccelKVM, nil
		}
		return AccelTCG, nil
	default:
		return "", fmt.Errorf("qemu driver: accel %q: want %q, %q or empty for automatic", accel, AccelKVM, AccelTCG)
	}
}

// Close releases nothing the VMs need: they keep running. It exists so the driver
// has the same life cycle as the libvirt one.
func (d *Driver) Close() error { return nil }

// problemEntries returns the state directory entries the last List (or New) could not
// manage, sorted by name. They are never deleted by the driver.
func (d *Driver) problemEntries() []problem {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]problem, 0, len(d.problems))
	for p, msg := range d.problems {
		out = append(out, problem{Name: filepath.Base(p), Path: p, Err: msg})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// List returns every VM with readable Drover metadata under the state directory,
// running or not, sorted by name. Entries it cannot read are logged, kept for
// problemEntries, and skipped: one bad entry never hides the others.
func (d *Driver) List(ctx context.Context) ([]hypervisor.VM, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list vms: %w", err)
	}
	entries, err := os.ReadDir(d.root)
	if err != nil {
		return nil, fmt.Errorf("list vms: read %s: %w", d.root, err)
	}
	var (
		recs     []record
		problems = map[string]string{}
	)
	for _, e := range entries {
		if isTempName(e.Name()) {
			continue // a Create between its temp dir and the rename
		}
		rec, err := readEntry(d.root, e.Name())
		if err != nil {
			problems[filepath.Join(d.root, e.Name())] = err.Error()
			continue
		}
		recs = append(recs, rec)
	}
	d.noteProblems(problems)

	vms := make([]hypervisor.VM, len(recs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8) // QMP round trips overlap; bounded for big fleets
	for i, rec := range recs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			vms[i] = d.observe(ctx, rec)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list vms: %w", err)
	}
	sort.Slice(vms, func(i, j int) bool { return vms[i].Name < vms[j].Name })
	return vms, nil
}

// noteProblems replaces the recorded problems, logging each new one once rather than
// on every pass.
func (d *Driver) noteProblems(found map[string]string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for p, msg := range found {
		if d.problems[p] != msg {
			d.log.Warn("state entry is not a manageable vm; leaving it untouched", "path", p, "err", msg)
		}
	}
	d.problems = found
}

// Get returns one managed VM: hypervisor.ErrNotFound if there is no entry of that
// name, hypervisor.ErrNotManaged if the entry is not readable Drover state.
func (d *Driver) Get(ctx context.Context, name string) (hypervisor.VM, error) {
	if err := ctx.Err(); err != nil {
		return hypervisor.VM{}, fmt.Errorf("get vm %s: %w", name, err)
	}
	rec, err := d.lookup(name)
	if err != nil {
		return hypervisor.VM{}, fmt.Errorf("get vm %s: %w", name, err)
	}
	return d.observe(ctx, rec), nil
}

// lookup reads the entry of a VM Drover may act on.
func (d *Driver) lookup(name string) (record, error) {
	if !hypervisor.ValidName(name) {
		// Not a name Create accepts, so no entry of Drover's can have it; this
		// also keeps names like ".." from reaching outside the state directory.
		return record{}, hypervisor.ErrNotFound
	}
	if _, err := os.Lstat(filepath.Join(d.root, name)); errors.Is(err, os.ErrNotExist) {
		return record{}, hypervisor.ErrNotFound
	} else if err != nil {
		return record{}, fmt.Errorf("stat state entry: %w", err)
	}
	rec, err := readEntry(d.root, name)
	if err != nil {
		return record{}, fmt.Errorf("%w: %w", hypervisor.ErrNotManaged, err)
	}
	return rec, nil
}

// observe reports a VM from its record and its process.
func (d *Driver) observe(ctx context.Context, rec record) hypervisor.VM {
	vm := hypervisor.VM{Name: rec.Name, Meta: rec.meta()}
	d.mu.Lock()
	creating := d.creating[rec.Name]
	d.mu.Unlock()
	p := d.paths(rec.Name)
	pid := processAlive(p)
	switch {
	case creating:
		vm.State = hypervisor.StateStarting
		return vm // half made: nothing to compare yet
	case pid > 0:
		vm.State = d.qmpState(ctx, p.qmp)
	case fileExists(p.stopped):
		vm.State = hypervisor.StateShutoff
	default:
		// Gone without Drover stopping it: killed, or QEMU itself failed.
		vm.State = hypervisor.StateCrashed
	}
	vm.Drift = append(drift(rec, pid), d.seedDrift(ctx, p, rec, pid)...)
	if pid > 0 && rec.Tap != "" {
		vm.Drift = append(vm.Drift, tapDrift(rec)...)
		if why := hypervisor.StaticAddressDrift(rec.MAC, rec.Address); why != "" {
			vm.Drift = append(vm.Drift, why)
		}
	}
	if vm.State == hypervisor.StateRunning {
		d.endpoint(ctx, &vm, rec)
	} else {
		vm.Port = rec.HostPort
		if rec.Tap != "" {
			vm.Port = rec.GuestPort
		}
	}
	return vm
}

// endpoint sets where the guest's service is reached: the forwarded loopback port
// for user networking; on a bridge, the guest's static address, or the one the host's
// neighbour table holds for its MAC once the guest has talked (DHCP).
func (d *Driver) endpoint(ctx context.Context, vm *hypervisor.VM, rec record) {
	if rec.Tap == "" {
		vm.Address, vm.Port = "127.0.0.1", rec.HostPort
		return
	}
	vm.Port = rec.GuestPort
	if a := (hypervisor.Network{Address: rec.Address}).StaticAddress(); a != "" {
		vm.Address = a
		return
	}
	vm.AddressSources = []string{hypervisor.SourceNeighbours, SourceAgent}
	a, err := hypervisor.NeighbourAddress(rec.MAC)
	if err != nil {
		d.log.Debug("guest address not available", "vm", rec.Name, "source", hypervisor.SourceNeighbours, "err", err)
	}
	if a == "" {
		if a, err = agentAddress(ctx, d.paths(rec.Name).agent, rec.MAC); err != nil {
			d.log.Debug("guest address not available", "vm", rec.Name, "source", SourceAgent, "err", err)
		}
	}
	vm.Address = a
}

// Shutdown presses the VM's ACPI power button and waits up to timeout for the guest to
// power off, then quits QEMU, killing it if it does not go. The VM's entry stays.
func (d *Driver) Shutdown(ctx context.Context, name string, timeout time.Duration) error {
	unlock := d.locks.Lock(name)
	defer unlock()
	rec, err := d.lookup(name)
	if err != nil {
		return fmt.Errorf("shut down vm %s: %w", name, err)
	}
	p := d.paths(rec.Name)
	log := d.log.With("vm", name)
	if processAlive(p) == 0 {
		return nil
	}
	if _, err := qmpRun(ctx, p.qmp, qmpTimeout, "system_powerdown"); err != nil {
		// The guest may be too early in boot for ACPI, or QEMU busy; the wait
		// below decides either way.
		log.Warn("acpi power button press failed", "err", err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		if processAlive(p) == 0 {
			break
		}
		// -no-shutdown keeps QEMU alive once the guest powers off.
		if d.qmpState(ctx, p.qmp) == hypervisor.StateShutoff {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("shut down vm %s: %w", name, ctx.Err())
		case <-timer.C:
			log.Warn("vm did not power off in time; forcing it off", "timeout", timeout)
			break wait
		case <-tick.C:
		}
	}
	if processAlive(p) > 0 {
		if err := d.saveConsole(ctx, p); err != nil {
			log.Warn("console not saved", "err", err)
		}
	}
	// Marked before QEMU goes, so the dead process reads as shut off, not crashed.
	if err := atomicfile.Write(p.stopped, nil, 0o644); err != nil {
		return fmt.Errorf("shut down vm %s: %w", name, err)
	}
	if err := d.stopProcess(ctx, p, log); err != nil {
		return fmt.Errorf("shut down vm %s: %w", name, err)
	}
	log.Info("vm shut down")
	return nil
}

// Destroy kills a managed VM's process if it runs and removes its whole entry:
// overlay, socket, pid file, console log, metadata. An entry Drover cannot read is
// refused with hypervisor.ErrNotManaged.
func (d *Driver) Destroy(ctx context.Context, name string) error {
	unlock := d.locks.Lock(name)
	defer unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("destroy vm %s: %w", name, err)
	}
	rec, err := d.lookup(name)
	if err != nil {
		return fmt.Errorf("destroy vm %s: %w", name, err)
	}
	p := d.paths(rec.Name)
	if err := killProcess(ctx, p); err != nil {
		return fmt.Errorf("destroy vm %s: %w", name, err)
	}
	if rec.Tap != "" {
		// Before the entry that names it goes, so a killed Destroy leaves an
		// entry the next one finishes, never a tap nobody knows.
		if err := removeTap(rec.Tap); err != nil {
			return fmt.Errorf("destroy vm %s: %w", name, err)
		}
	}
	// Marked once nothing runs: a Destroy killed from here on leaves an entry that
	// Sweep may finish, while one killed before leaves a VM the next pass destroys.
	if !rec.Destroying {
		rec.Destroying = true
		if err := d.writeRecord(p, rec); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				return fmt.Errorf("destroy vm %s: %w", name, err)
			}
			// A full filesystem, most often why the VM paused, refuses even the
			// mark. Its overlay is what filled it and nothing runs from it now:
			// removing it first makes the room, and a Destroy killed right after
			// leaves a VM without a disk, which the next pass destroys.
			if rerr := os.Remove(p.overlay); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				return fmt.Errorf("destroy vm %s: %w (and removing the overlay to make room: %w)", name, err, rerr)
			}
			if err := d.writeRecord(p, rec); err != nil {
				return fmt.Errorf("destroy vm %s: %w", name, err)
			}
		}
	}
	if err := removeEntry(p); err != nil {
		return fmt.Errorf("destroy vm %s: %w", name, err)
	}
	d.log.Info("vm destroyed", "vm", name)
	return nil
}
