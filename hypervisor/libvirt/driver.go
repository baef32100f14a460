// Package libvirt runs Drover's VMs as persistent libvirt domains (libvirt-go-module
// and libvirtxml). Drover's metadata lives in each domain's <metadata>, so the domains
// themselves are the record of what Drover made: a restarted Drover rebuilds its view
// with List, and a domain without that metadata is never touched.
package libvirt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/drover-dev/drover/hypervisor"
)

// defaultURI is the libvirt connection used when Config.URI is empty.
const defaultURI = "qemu:///system"

// errInvalidSpec is returned by Create for a spec that cannot be created; nothing was made.
var errInvalidSpec = errors.New("invalid vm spec")

// errExists is returned by Create when a domain of that name is already defined.
var errExists = errors.New("vm already exists")

// Config says where the driver works.
type Config struct {
	URI      string // libvirt connection URI; defaultURI if empty
	StateDir string // overlays and console logs go under StateDir/libvirt
}

// Driver creates, observes and removes Drover's VMs through one libvirt connection.
// It is safe for concurrent use; calls on the same VM name are serialised.
type Driver struct {
	uri      string
	dir      string // StateDir/libvirt, absolute: libvirtd resolves paths itself
	log      *slog.Logger
	virtType string

	// pickPort and now are fields so tests can take a port away and fix the clock.
	pickPort func() (int, error)
	now      func() time.Time

	connMu sync.Mutex
	conn   *libvirt.Connect
	dead   []*libvirt.Connect // replaced connections, closed by Close

	qemuGID  int            // QEMU's group from libvirt's DAC label; -1 if none
	defineMu sync.Mutex     // validated defines take turns: see define
	inflight sync.WaitGroup // calls running in libvirt, perhaps abandoned by their caller

	locks  hypervisor.NameLocks
	drifts driftCache
	ports  hypervisor.HostPorts // host ports handed to Creates still in flight
}

// New connects to libvirt at cfg.URI (bounded by ctx and connectTimeout), decides
// between KVM and TCG once, and, for the local system daemon, fails unless libvirt's
// QEMU user can traverse down to the state directory: better now than at every VM's
// start, after its images were fetched.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Driver, error) {
	if cfg.URI == "" {
		cfg.URI = defaultURI
	}
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("libvirt driver: no state directory")
	}
	if log == nil {
		return nil, fmt.Errorf("libvirt driver: no logger")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("libvirt driver: %w", err)
	}
	stateDir, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("libvirt driver: state directory %s: %w", cfg.StateDir, err)
	}
	dir := filepath.Join(stateDir, "libvirt")
	// World-traversable: QEMU runs as its own user (libvirt-qemu on Debian) and must
	// reach the overlays and console logs in here.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("libvirt driver: create state directory: %w", err)
	}
	// Past a restrictive umask: this directory is Drover's own.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("libvirt driver: state directory: %w", err)
	}
	log = log.With("driver", "libvirt", "uri", cfg.URI)
	// Before any connection: keepalive needs the event loop.
	if err := startEventLoop(log); err != nil {
		return nil, fmt.Errorf("libvirt driver: %w", err)
	}
	conn, err := connect(ctx, cfg.URI, log)
	if err != nil {
		return nil, err
	}
	d := &Driver{
		uri:      cfg.URI,
		dir:      dir,
		log:      log,
		pickPort: hypervisor.FreeLocalPort,
		now:      time.Now,
		conn:     conn,
		qemuGID:  -1,
	}
	d.virtType = chooseVirtType(conn, cfg.URI, d.log)
	if err := d.checkStateDir(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("libvirt driver: %w", err)
	}
	d.log.Info("connected to libvirt", "virt_type", d.virtType, "state_dir", dir)
	return d, nil
}

// Close releases the libvirt connection. VMs keep running. A connection is never
// closed under a call still in libvirt (libvirt would crash): if one is still blocked
// after a few seconds, Close leaves the connection to the process's exit.
func (d *Driver) Close() error {
	idle := make(chan struct{})
	go func() {
		d.inflight.Wait()
		close(idle)
	}()
	select {
	case <-idle:
	case <-time.After(closeWait):
		return fmt.Errorf("close libvirt connection %s: calls still blocked in libvirt after %v; connection left open", d.uri, closeWait)
	}
	d.connMu.Lock()
	defer d.connMu.Unlock()
	var errs []error
	for _, c := range append(d.dead, d.conn) {
		if c == nil {
			continue
		}
		if _, err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	d.conn, d.dead = nil, nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close libvirt connection %s: %w", d.uri, err)
	}
	return nil
}

// connection returns a live connection, reconnecting once libvirt has reported the
// old one broken (libvirtd restarted, or keepalive gave up on it). The old one is kept,
// not closed, because other calls may still hold it; Close releases it.
func (d *Driver) connection(ctx context.Context) (*libvirt.Connect, error) {
	d.connMu.Lock()
	defer d.connMu.Unlock()
	if d.conn == nil {
		return nil, fmt.Errorf("libvirt driver for %s is closed", d.uri)
	}
	if alive, err := d.conn.IsAlive(); err == nil && alive {
		return d.conn, nil
	}
	conn, err := connect(ctx, d.uri, d.log)
	if err != nil {
		return nil, err
	}
	d.log.Warn("reconnected to libvirt")
	d.dead = append(d.dead, d.conn)
	d.conn = conn
	return conn, nil
}

// Create defines a persistent domain for spec and starts it. On any failure it removes
// everything it made (domain, overlay, console log) before returning. When ctx ends
// first, Create returns then; what it had started finishes or is cleaned up in the
// background, and List shows the outcome.
func (d *Driver) Create(ctx context.Context, spec hypervisor.Spec) (hypervisor.VM, error) {
	if verr := spec.Validate(hypervisor.NetworkUser, hypervisor.NetworkBridge, hypervisor.NetworkLibvirt); verr != nil {
		return hypervisor.VM{}, fmt.Errorf("create vm %q: %w: %w", spec.Name, errInvalidSpec, verr)
	}
	vm, err := bounded(ctx, &d.inflight, func() (hypervisor.VM, error) { return d.create(ctx, spec) }, nil)
	if err != nil {
		return hypervisor.VM{}, fmt.Errorf("create vm %s: %w", spec.Name, err)
	}
	return vm, nil
}

func (d *Driver) create(ctx context.Context, spec hypervisor.Spec) (_ hypervisor.VM, err error) {
	unlock := d.locks.Lock(spec.Name)
	defer unlock()
	log := d.log.With("vm", spec.Name, "service", spec.Meta.Service)

	conn, err := d.connection(ctx)
	if err != nil {
		return hypervisor.VM{}, err
	}
	if dom, lerr := conn.LookupDomainByName(spec.Name); lerr == nil {
		dom.Free()
		return hypervisor.VM{}, errExists
	} else if !isVirErr(lerr, libvirt.ERR_NO_DOMAIN) {
		return hypervisor.VM{}, fmt.Errorf("look up domain: %w", lerr)
	}

	if err := d.checkAttachment(conn, spec.Network); err != nil {
		return hypervisor.VM{}, err
	}
	golden, overlaySize, err := checkDisks(ctx, spec)
	if err != nil {
		return hypervisor.VM{}, err
	}

	made := &leftovers{log: log}
	defer func() {
		if err != nil {
			made.remove()
		}
	}()

	created := spec.CreatedAt(d.now)

	p := domainParams{
		spec:       spec,
		virtType:   d.virtType,
		consoleLog: filepath.Join(d.dir, consoleLogName(spec.Name)),
		meta: vmMetadata{
			Fleet:       spec.Meta.Fleet,
			Service:     spec.Meta.Service,
			SpecHash:    spec.Meta.SpecHash,
			Revision:    spec.Meta.Revision,
			Version:     spec.Meta.Version,
			Created:     created.Format(time.RFC3339),
			NetworkMode: spec.Network.Mode,
			GuestPort:   spec.GuestPort,
			MAC:         spec.Network.MAC,
			Address:     spec.Network.Address,
			CreatedWith: &createdWith{
				CPUs:      spec.CPUs,
				MemoryMiB: spec.MemoryMiB,
				Kernel:    spec.Kernel,
				Initrd:    spec.Initrd,
				Cmdline:   spec.Cmdline,
				Disk:      spec.Disk,
				Bridge:    spec.Network.Bridge,
				Network:   spec.Network.Network,
			},
		},
	}
	p.meta.ConsoleLog = p.consoleLog
	// No domain of this name exists, so files under its names are leftovers of a
	// Drover that died mid-create.
	made.files = append(made.files, p.consoleLog,
		filepath.Join(d.dir, seedName(spec.Name)), filepath.Join(d.dir, uefiVarsName(spec.Name)))
	made.remove()

	if err := d.makeFiles(ctx, &p, golden, overlaySize, made); err != nil {
		return hypervisor.VM{}, err
	}

	user := spec.Network.Mode == hypervisor.NetworkUser
	var ports []int
	defer func() { d.ports.Release(ports...) }()
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return hypervisor.VM{}, err
		}
		if user {
			port, err := d.ports.Reserve(d.pickPort)
			if err != nil {
				return hypervisor.VM{}, err
			}
			ports = append(ports, port)
			p.hostPort, p.meta.HostPort = port, port
		}
		xml, err := domainXML(p)
		if err != nil {
			return hypervisor.VM{}, err
		}
		dom, err := d.define(ctx, conn, xml)
		if err != nil {
			return hypervisor.VM{}, err
		}
		made.dom = dom
		serr := dom.Create()
		if serr == nil {
			break
		}
		// QEMU reports a taken hostfwd port only as text; whether the port is
		// bound now is the check that does not depend on its wording.
		if !user || attempt >= maxPortAttempts || !hypervisor.PortInUse(p.hostPort) {
			return hypervisor.VM{}, fmt.Errorf("start domain: %w", serr)
		}
		log.Warn("host port was taken before the vm started; trying another", "host_port", p.hostPort, "attempt", attempt)
		if err := made.undefine(); err != nil {
			return hypervisor.VM{}, err
		}
	}

	meta := spec.Meta
	meta.Created = created
	vm := hypervisor.VM{Name: spec.Name, Meta: meta, State: observeState(made.dom)}
	vm.Address, vm.Port, vm.AddressSources = d.endpoint(made.dom, p.meta, vm.State)
	made.dom.Free()
	made.dom = nil
	log.Info("vm created", "virt_type", d.virtType, "host_port", p.hostPort)
	return vm, nil
}

// protectOverlay makes an overlay, which holds what the guest wrote, readable by
// QEMU only: root and QEMU's group, not every local user as the umask would. libvirt
// chowns it to QEMU's user at start anyway (dynamic_ownership); the group keeps it
// usable where that is off.
func (d *Driver) protectOverlay(path string) error {
	mode := os.FileMode(0o600)
	if d.qemuGID >= 0 {
		if err := os.Chown(path, -1, d.qemuGID); err != nil {
			return fmt.Errorf("overlay %s: %w", path, err)
		}
		mode = 0o660
	}
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("overlay %s: %w", path, err)
	}
	return nil
}

// qemuImg is the qemu-img Drover runs for overlays, from PATH: libvirt runs QEMU
// itself, so the driver is given no binaries.
const qemuImg = "qemu-img"

// maxPortAttempts bounds the retries when the picked host port is taken between
// picking and QEMU binding it.
const maxPortAttempts = 5

func overlayName(vm string) string    { return vm + ".qcow2" }
func consoleLogName(vm string) string { return vm + ".console.log" }

// leftovers is what a Create has made so far, removed if it fails.
type leftovers struct {
	log   *slog.Logger
	dom   *libvirt.Domain
	files []string
}

func (l *leftovers) remove() {
	if l.dom != nil {
		if active, err := l.dom.IsActive(); err == nil && active {
			if err := l.dom.Destroy(); err != nil {
				l.log.Error("clean up failed create: stop domain", "err", err)
			}
		}
		if err := l.undefine(); err != nil {
			l.log.Error("clean up failed create", "err", err)
		}
	}
	for _, f := range l.files {
		if err := removeFileAndRotations(f); err != nil {
			l.log.Error("clean up failed create", "err", err)
		}
	}
}

func (l *leftovers) undefine() error {
	defer func() {
		l.dom.Free()
		l.dom = nil
	}()
	if err := undefine(l.dom); err != nil {
		return err
	}
	return nil
}

// undefine removes a domain's definition and whatever libvirt keeps beside it.
func undefine(dom *libvirt.Domain) error {
	const all = libvirt.DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
		libvirt.DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | libvirt.DOMAIN_UNDEFINE_NVRAM
	err := dom.UndefineFlags(all)
	if isVirErr(err, libvirt.ERR_INVALID_ARG) || isVirErr(err, libvirt.ERR_NO_SUPPORT) {
		// Not every libvirt driver knows every flag (the test driver lacks NVRAM
		// and checkpoints); the ones it lacks name things it cannot have.
		err = dom.UndefineFlags(libvirt.DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
	}
	if err != nil {
		return fmt.Errorf("undefine domain: %w", err)
	}
	return nil
}

// removeFileAndRotations removes path and the numbered copies virtlogd rotates it into.
func removeFileAndRotations(path string) error {
	rotated, _ := filepath.Glob(path + ".[0-9]*")
	var errs []error
	for _, f := range append([]string{path}, rotated...) {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// List returns every domain carrying Drover's metadata, running or not, sorted by name.
func (d *Driver) List(ctx context.Context) ([]hypervisor.VM, error) {
	return bounded(ctx, &d.inflight, func() ([]hypervisor.VM, error) { return d.list(ctx) }, nil)
}

func (d *Driver) list(ctx context.Context) ([]hypervisor.VM, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list vms: %w", err)
	}
	conn, err := d.connection(ctx)
	if err != nil {
		return nil, fmt.Errorf("list vms: %w", err)
	}
	doms, err := conn.ListAllDomains(0)
	if err != nil {
		return nil, fmt.Errorf("list vms: list domains: %w", err)
	}
	defer func() {
		for i := range doms {
			doms[i].Free()
		}
	}()
	vms := make([]hypervisor.VM, 0, len(doms))
	seen := make(map[string]bool, len(doms))
	for i := range doms {
		vm, _, err := d.observe(&doms[i])
		switch {
		case err == nil:
			vms = append(vms, vm)
			seen[vm.Name] = true
		case errors.Is(err, errNoMetadata), errors.Is(err, hypervisor.ErrNotFound):
			// Not Drover's, or gone since the listing.
		case errors.Is(err, errBadMetadata):
			d.log.Warn("skipping domain with unreadable drover metadata", "err", err)
		default:
			return nil, fmt.Errorf("list vms: %w", err)
		}
	}
	d.drifts.keep(seen)
	sort.Slice(vms, func(i, j int) bool { return vms[i].Name < vms[j].Name })
	return vms, nil
}

// Get returns one managed VM: hypervisor.ErrNotFound if no domain has that name,
// hypervisor.ErrNotManaged if it is not Drover's.
func (d *Driver) Get(ctx context.Context, name string) (hypervisor.VM, error) {
	vm, err := bounded(ctx, &d.inflight, func() (hypervisor.VM, error) { return d.get(ctx, name) }, nil)
	if err != nil {
		return hypervisor.VM{}, fmt.Errorf("get vm %s: %w", name, err)
	}
	return vm, nil
}

func (d *Driver) get(ctx context.Context, name string) (hypervisor.VM, error) {
	dom, _, err := d.lookupManaged(ctx, name)
	if err != nil {
		return hypervisor.VM{}, err
	}
	defer dom.Free()
	vm, _, err := d.observe(dom)
	return vm, err
}

// Shutdown presses the VM's ACPI power button and waits up to timeout for it to
// power off, then pulls the plug. The domain stays defined.
func (d *Driver) Shutdown(ctx context.Context, name string, timeout time.Duration) error {
	if err := bounded0(ctx, &d.inflight, func() error { return d.shutdown(ctx, name, timeout) }); err != nil {
		return fmt.Errorf("shut down vm %s: %w", name, err)
	}
	return nil
}

func (d *Driver) shutdown(ctx context.Context, name string, timeout time.Duration) error {
	unlock := d.locks.Lock(name)
	defer unlock()
	dom, _, err := d.lookupManaged(ctx, name)
	if err != nil {
		return err
	}
	defer dom.Free()
	log := d.log.With("vm", name)

	off, err := isOff(dom)
	if err != nil || off {
		return err
	}
	err = dom.ShutdownFlags(libvirt.DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
	if isVirErr(err, libvirt.ERR_INVALID_ARG) || isVirErr(err, libvirt.ERR_NO_SUPPORT) {
		// A libvirt driver without a choice of method (the test driver) has one
		// graceful shutdown; let it use it.
		err = dom.Shutdown()
	}
	if err != nil {
		// The guest may have stopped meanwhile, or not be far enough to take
		// ACPI; either way the wait below decides.
		log.Warn("acpi shutdown request failed", "err", err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		off, err := isOff(dom)
		if err != nil || off {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			log.Warn("vm did not power off in time; forcing it off", "timeout", timeout)
			return forceOff(dom)
		case <-tick.C:
		}
	}
}

// Destroy stops a managed VM if it runs, removes its overlay and console log, and
// undefines it. A domain that is not Drover's is refused with hypervisor.ErrNotManaged.
func (d *Driver) Destroy(ctx context.Context, name string) error {
	if err := bounded0(ctx, &d.inflight, func() error { return d.destroy(ctx, name) }); err != nil {
		return fmt.Errorf("destroy vm %s: %w", name, err)
	}
	return nil
}

func (d *Driver) destroy(ctx context.Context, name string) error {
	unlock := d.locks.Lock(name)
	defer unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	dom, meta, err := d.lookupManaged(ctx, name)
	if err != nil {
		return err
	}
	defer dom.Free()
	if err := forceOff(dom); err != nil {
		return err
	}
	// Files go before the definition: the definition is the only record of them,
	// so a Destroy interrupted here is finished by the next one.
	var errs []error
	for _, f := range []struct{ path, want string }{
		{meta.Overlay, overlayName(name)}, {meta.ConsoleLog, consoleLogName(name)},
		{meta.Seed, seedName(name)}, {meta.UEFIVars, uefiVarsName(name)},
	} {
		if f.path == "" {
			continue
		}
		// Never delete what Drover would not have made, whatever the metadata says.
		if filepath.Base(f.path) != f.want || !filepath.IsAbs(f.path) {
			d.log.Warn("not removing unexpected file named in metadata", "vm", name, "path", f.path)
			continue
		}
		if err := removeFileAndRotations(f.path); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove files: %w", err)
	}
	if err := undefine(dom); err != nil {
		if isVirErr(err, libvirt.ERR_NO_DOMAIN) {
			return nil
		}
		return err
	}
	d.log.Info("vm destroyed", "vm", name)
	return nil
}

// forceOff stops a domain hard; one already off is fine.
func forceOff(dom *libvirt.Domain) error {
	off, err := isOff(dom)
	if err != nil || off {
		return err
	}
	if err := dom.DestroyFlags(libvirt.DOMAIN_DESTROY_DEFAULT); err != nil {
		// It may have stopped on its own between the two calls.
		if off, oerr := isOff(dom); oerr == nil && off {
			return nil
		}
		return fmt.Errorf("stop domain: %w", err)
	}
	return nil
}

// isOff reports whether a domain is not running; a domain that vanished is off.
func isOff(dom *libvirt.Domain) (bool, error) {
	active, err := dom.IsActive()
	if isVirErr(err, libvirt.ERR_NO_DOMAIN) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("domain state: %w", err)
	}
	return !active, nil
}

func isVirErr(err error, code libvirt.ErrorNumber) bool {
	var verr libvirt.Error
	return errors.As(err, &verr) && verr.Code == code
}
