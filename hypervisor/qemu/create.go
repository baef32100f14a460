package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/cidata"
	"github.com/drover-dev/drover/internal/atomicfile"
)

// maxSocketPath is the longest path a unix socket can be bound at (sun_path less its NUL).
const maxSocketPath = 107

// maxPortAttempts bounds the retries when the picked host port is taken between
// picking and QEMU binding it.
const maxPortAttempts = 5

// Create starts a VM for spec. Its entry (with metadata.json) exists before QEMU starts,
// so a Drover killed at any point leaves either nothing or an entry a restarted
// Drover sees and can destroy; never a process nobody knows. A Create that fails
// removes everything it made.
func (d *Driver) Create(ctx context.Context, spec hypervisor.Spec) (_ hypervisor.VM, err error) {
	if spec.Network.Mode == hypervisor.NetworkLibvirt {
		return hypervisor.VM{}, fmt.Errorf("create vm %s: network mode %q (libvirt network %q): %w", spec.Name, spec.Network.Mode, spec.Network.Network, ErrUnsupportedNetwork)
	}
	// libvirt networks were turned away above with their own error.
	if verr := spec.Validate(hypervisor.NetworkUser, hypervisor.NetworkBridge); verr != nil {
		return hypervisor.VM{}, fmt.Errorf("create vm %q: %w: %w", spec.Name, ErrInvalidSpec, verr)
	}
	bridged := spec.Network.Mode == hypervisor.NetworkBridge
	if bridged {
		// Before anything is made: a missing bridge is the operator's to create.
		if err := hypervisor.CheckBridge(spec.Network.Bridge); err != nil {
			return hypervisor.VM{}, fmt.Errorf("create vm %s: %w", spec.Name, err)
		}
		if spec.Network.MAC == "" {
			spec.Network.MAC = hypervisor.MACFor(spec.Name)
		}
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("create vm %s: %w", spec.Name, err)
		}
	}()
	unlock := d.locks.Lock(spec.Name)
	defer unlock()
	d.setCreating(spec.Name, true)
	defer d.setCreating(spec.Name, false)
	log := d.log.With("vm", spec.Name, "service", spec.Meta.Service)

	p := d.paths(spec.Name)
	if len(p.qmp) > maxSocketPath {
		return hypervisor.VM{}, fmt.Errorf("%w: qmp socket path %s is longer than %d bytes: use a shorter state directory", ErrInvalidSpec, p.qmp, maxSocketPath)
	}
	if _, err := os.Lstat(p.dir); err == nil {
		return hypervisor.VM{}, ErrExists
	} else if !errors.Is(err, os.ErrNotExist) {
		return hypervisor.VM{}, fmt.Errorf("stat state entry: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return hypervisor.VM{}, err
	}

	plan, err := d.checkDisks(ctx, spec)
	if err != nil {
		return hypervisor.VM{}, err
	}

	var ports []int
	defer func() { d.ports.Release(ports...) }()
	port := 0
	if !bridged {
		if port, err = d.ports.Reserve(d.pickPort); err != nil {
			return hypervisor.VM{}, err
		}
		ports = append(ports, port)
	}

	created := spec.CreatedAt(d.now)
	rec := record{
		Format:      recordFormat,
		Name:        spec.Name,
		Fleet:       spec.Meta.Fleet,
		Service:     spec.Meta.Service,
		SpecHash:    spec.Meta.SpecHash,
		Revision:    spec.Meta.Revision,
		Version:     spec.Meta.Version,
		Created:     created,
		NetworkMode: spec.Network.Mode,
		HostPort:    port,
		GuestPort:   spec.GuestPort,
		Accel:       d.accel,
		CreatedWith: &createdWith{
			CPUs:      spec.CPUs,
			MemoryMiB: spec.MemoryMiB,
			Kernel:    spec.Kernel,
			Initrd:    spec.Initrd,
			Cmdline:   spec.Cmdline,
			Disk:      spec.Disk,
		},
	}
	if bridged {
		rec.Bridge, rec.MAC, rec.Address = spec.Network.Bridge, spec.Network.MAC, spec.Network.Address
		rec.Tap = tapName(d.root, spec.Name)
	}
	rec.Args = d.args(p, spec, rec)
	if spec.Disk != "" {
		rec.CreatedWith.Overlay = p.overlay
		rec.CreatedWith.DiskSizeBytes = plan.overlaySize
		if spec.Kernel == "" && spec.Firmware == hypervisor.FirmwareUEFI {
			rec.CreatedWith.Firmware = hypervisor.FirmwareUEFI
		}
	}
	if spec.Seed != nil {
		rec.CreatedWith.Seed = p.seed
	}
	if err := d.makeEntry(p, rec); err != nil {
		return hypervisor.VM{}, err
	}
	defer func() {
		if err == nil {
			return
		}
		// A fresh context: the caller's may be what ended this Create.
		cctx, cancel := context.WithTimeout(context.Background(), killWait)
		defer cancel()
		if kerr := killProcess(cctx, p); kerr != nil {
			log.Error("clean up failed create: qemu still running; entry kept", "err", kerr)
			return
		}
		if rec.Tap != "" {
			if terr := removeTap(rec.Tap); terr != nil {
				log.Error("clean up failed create: tap kept; entry kept", "err", terr)
				return
			}
		}
		if rerr := removeEntry(p); rerr != nil {
			log.Error("clean up failed create", "err", rerr)
		}
	}()
	if bridged {
		// After the entry that names it, so a Sweep never takes a tap being made
		// for one.
		if err := makeTap(rec.Tap, rec.Bridge); err != nil {
			return hypervisor.VM{}, err
		}
	}

	if err := d.makeDisks(ctx, p, spec, plan); err != nil {
		return hypervisor.VM{}, err
	}
	if spec.Seed != nil {
		// What was written, so a seed swapped on disk later is seen as drift.
		if rec.CreatedWith.SeedSHA256, err = cidata.Digest(p.seed); err != nil {
			return hypervisor.VM{}, err
		}
		if err := d.writeRecord(p, rec); err != nil {
			return hypervisor.VM{}, err
		}
	}

	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return hypervisor.VM{}, err
		}
		stderr, err := d.start(ctx, p, rec.Args)
		if err == nil {
			if stderr != "" {
				log.Debug("qemu said while starting", "stderr", stderr)
			}
			break
		}
		// QEMU says "Could not set up host forwarding rule"; whether the port is
		// bound now is the check that does not depend on its wording.
		taken := !bridged && (strings.Contains(stderr, "host forwarding") || hypervisor.PortInUse(rec.HostPort))
		if !taken || attempt >= maxPortAttempts {
			return hypervisor.VM{}, err
		}
		log.Warn("host port was taken before qemu bound it; trying another", "host_port", rec.HostPort, "attempt", attempt)
		if err := killProcess(ctx, p); err != nil {
			return hypervisor.VM{}, err
		}
		if rec.HostPort, err = d.ports.Reserve(d.pickPort); err != nil {
			return hypervisor.VM{}, err
		}
		ports = append(ports, rec.HostPort)
		rec.Args = d.args(p, spec, rec)
		if err := d.writeRecord(p, rec); err != nil {
			return hypervisor.VM{}, err
		}
	}

	vm := hypervisor.VM{Name: spec.Name, Meta: rec.meta(), State: d.qmpState(ctx, p.qmp)}
	d.endpoint(ctx, &vm, rec)
	log.Info("vm created", "accel", d.accel, "host_port", rec.HostPort, "tap", rec.Tap, "mac", rec.MAC, "address", rec.Address, "pid", processAlive(p))
	return vm, nil
}

func (d *Driver) setCreating(name string, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if on {
		d.creating[name] = true
	} else {
		delete(d.creating, name)
	}
}

// makeEntry creates the VM's directory with its metadata already inside, by building
// it under a temporary name and renaming it into place: an entry under a VM's name is
// never without metadata, so it is never mistaken for a foreign one.
func (d *Driver) makeEntry(p vmPaths, rec record) error {
	tmp, err := os.MkdirTemp(d.root, tempPrefix+rec.Name+"-")
	if err != nil {
		return fmt.Errorf("create state entry: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("create state entry: %w", err)
	}
	data, err := encodeRecord(rec)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(tmp, filepath.Base(p.metadata)), data, 0o644); err != nil {
		return fmt.Errorf("create state entry: %w", err)
	}
	if err := os.Rename(tmp, p.dir); err != nil {
		return fmt.Errorf("create state entry: %w", err)
	}
	ok = true
	return nil
}

func (d *Driver) writeRecord(p vmPaths, rec record) error {
	data, err := encodeRecord(rec)
	if err != nil {
		return err
	}
	return atomicfile.Write(p.metadata, data, 0o644)
}

// start runs QEMU, which daemonizes once it is fully set up: by the time the command
// returns, a bad option or a taken host port has failed it, and the VM's process has
// left Drover's session, so Drover exiting does not take it down.
func (d *Driver) start(ctx context.Context, p vmPaths, args []string) (stderr string, err error) {
	// Leftovers of a previous attempt would make QEMU's bind fail.
	for _, f := range []string{p.qmp, p.pid} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("start qemu: %w", err)
		}
	}
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, d.qemu, args...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = qemuEnv()
	// The daemon closes its copy of our pipes as it detaches; should it not, do not
	// wait for it forever.
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run()
	stderr = strings.TrimSpace(errOut.String() + out.String())
	if runErr != nil {
		return stderr, fmt.Errorf("start qemu: %w: %s", runErr, tail(stderr))
	}
	if processAlive(p) == 0 {
		return stderr, fmt.Errorf("start qemu: it reported success but no process runs with pid file %s: %s", p.pid, tail(stderr))
	}
	return stderr, nil
}

// args is QEMU's command line for a VM. -name makes it findable with ps; the pid file
// path in it is what tells this VM's process from a recycled pid.
func (d *Driver) args(p vmPaths, spec hypervisor.Spec, rec record) []string {
	a := []string{
		"-name", spec.Name,
		"-machine", "q35",
		"-accel", d.accel,
		"-smp", strconv.Itoa(spec.CPUs),
		"-m", strconv.Itoa(spec.MemoryMiB) + "M",
		"-nodefaults", "-no-user-config",
		"-display", "none",
		"-daemonize",
		"-pidfile", p.pid,
		// The guest powering off leaves QEMU up with status "shutdown", so List
		// tells a guest that powered off from a process that was killed.
		"-no-shutdown",
		"-chardev", "socket,id=qmp0,path=" + optEscape(p.qmp) + ",server=on,wait=off",
		"-mon", "chardev=qmp0,mode=control",
		// The console is a ring in QEMU's memory rather than a file: a VM outlives
		// Drover, and a guest printing forever must not fill the host's disk.
		"-chardev", fmt.Sprintf("ringbuf,id=%s,size=%d", consoleDevice, d.consoleSize),
		"-serial", "chardev:" + consoleDevice,
	}
	a = append(a, netArgs(spec, rec)...)
	if rec.Tap != "" {
		a = append(a, agentArgs(p.agent)...)
	}
	if spec.Kernel != "" {
		a = append(a, "-kernel", spec.Kernel)
		if spec.Initrd != "" {
			a = append(a, "-initrd", spec.Initrd)
		}
		if spec.Cmdline != "" {
			a = append(a, "-append", spec.Cmdline)
		}
	}
	return append(a, diskArgs(p, spec)...)
}

// netArgs are the NIC's arguments.
func netArgs(spec hypervisor.Spec, rec record) []string {
	if rec.Tap != "" {
		// The driver's own tap, already on the bridge: no script runs.
		return []string{
			"-netdev", "tap,id=net0,ifname=" + rec.Tap + ",script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=net0,mac=" + rec.MAC + ",romfile=",
		}
	}
	return []string{
		// restrict=on: the guest opens no connection to the host (10.0.2.2 is the
		// host's loopback, where Consul and Drover listen) nor through it; the
		// forwarded service port, opened from the host side, keeps working.
		"-netdev", fmt.Sprintf("user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:%d", rec.HostPort, spec.GuestPort),
		// No option ROM: nothing boots from the network, and it saves boot time.
		"-device", "virtio-net-pci,netdev=net0,romfile=",
	}
}

// qemuEnv is the whole environment QEMU runs with. Drover's own may hold secrets
// (CONSUL_HTTP_TOKEN, a git credential) that a VM's process, which outlives Drover and
// whose environment any process of the same user can read, must not carry.
func qemuEnv() []string {
	return []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
}

// optEscape escapes a value inside a QEMU option list, where a comma separates options.
func optEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// tail is the end of a command's output, enough to explain a failure in an error.
func tail(s string) string {
	if len(s) > 400 {
		s = "…" + s[len(s)-400:]
	}
	return s
}
