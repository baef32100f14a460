// Package hypervisor defines what a VM driver is given and what it reports: the VM spec,
// Drover's metadata carried by every managed VM, and the observed VM. Drivers live in
// sub-packages (hypervisor/libvirt, hypervisor/qemu) and export concrete types; the
// reconciler declares the small interface it needs from them.
package hypervisor

import (
	"errors"
	"time"
)

// Errors drivers return; callers branch with errors.Is.
var (
	// ErrNotFound: no managed VM has that name.
	ErrNotFound = errors.New("vm not found")
	// ErrNotManaged: the VM exists but carries no Drover metadata, so Drover never touches it.
	ErrNotManaged = errors.New("vm is not managed by drover")
)

// Network modes, as in the fleet file.
const (
	NetworkUser    = "user"    // QEMU user-mode networking, guest port forwarded to 127.0.0.1
	NetworkBridge  = "bridge"  // a host bridge
	NetworkLibvirt = "network" // a libvirt network
)

// Network says how a VM is attached.
type Network struct {
	Mode    string // NetworkUser, NetworkBridge or NetworkLibvirt
	Bridge  string // with NetworkBridge
	Network string // with NetworkLibvirt
}

// Metadata is what Drover records on every VM it creates. It is fixed at birth and is
// how a restarted Drover rebuilds its view: a VM without it is not Drover's.
type Metadata struct {
	// Fleet names the fleet (repository, branch, path) whose Drover made the VM; a
	// Drover manages only the VMs of its own fleet, so several share a host safely.
	Fleet    string
	Service  string
	SpecHash string
	Revision string
	Version  string
	Created  time.Time
}

// Spec is everything a driver needs to create one VM. Image paths are local files that
// have already been verified; a driver never writes them (a disk boots from an overlay).
type Spec struct {
	Name      string
	CPUs      int
	MemoryMiB int

	Kernel  string // optional: direct kernel boot
	Initrd  string // optional, with Kernel
	Cmdline string // optional, with Kernel
	Disk    string // optional golden disk image (qcow2 or raw), booted through a qcow2 overlay

	Network   Network
	GuestPort int // the port the service listens on in the guest

	Meta Metadata
}

// State is a VM's run state as the driver sees it.
type State string

// States.
const (
	StateRunning State = "running"
	StateShutoff State = "shutoff"
	StateCrashed State = "crashed"
	StatePaused  State = "paused"
	// StatePausedIOError: the hypervisor paused the guest because its disk failed a
	// write (most often the host filesystem under the overlay is full). The VM is
	// alive and resumes once the cause is fixed; destroying and recreating it would
	// hit the same full disk again, so it is reported, not replaced in a loop.
	StatePausedIOError State = "paused-ioerror"
	StateStarting      State = "starting"
	StateUnknown       State = "unknown"
)

// VM is a managed VM as observed.
type VM struct {
	Name  string
	Meta  Metadata
	State State
	// Address and Port are where the guest's service is reachable from the host:
	// 127.0.0.1 and the forwarded host port for user networking; the guest's own
	// address (empty until known) and GuestPort otherwise.
	Address string
	Port    int
	// Drift lists, one human-readable line each, how the VM's definition or process
	// now differs from what it was created with ("memory: created with 128 MiB, now
	// 256 MiB"). Empty when the VM is as created, or when it was created by a Drover
	// that did not record what it created.
	Drift []string
}
