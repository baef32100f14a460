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
	// ErrInvalidSpec: the spec can never be created as written (a disk_size below the
	// golden disk, say); retrying the same spec is pointless, so the revision is held.
	ErrInvalidSpec = errors.New("invalid vm spec")
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

	// MAC is the guest NIC's address, stable per VM (derived from its name, QEMU's
	// 52:54:00 prefix). Empty on user networking, where a driver picks its own.
	MAC string
	// Static addressing, with NetworkBridge or NetworkLibvirt: Address is the guest's
	// address with its prefix ("198.18.0.10/24"); empty means DHCP, the address then
	// learned after boot. Gateway and DNS are optional.
	Address string
	Gateway string
	DNS     []string
}

// Firmware values of Spec.Firmware for a VM booting its disk's own bootloader.
const (
	FirmwareBIOS = "bios" // SeaBIOS, the default
	FirmwareUEFI = "uefi" // OVMF, each VM with its own copy of the variable store
)

// Seed is a VM's cloud-init NoCloud data. A driver writes it to a read-only volume
// labelled "cidata" attached to the VM, and removes it with the VM.
type Seed struct {
	MetaData      []byte // meta-data: instance-id, local-hostname, drover map
	UserData      []byte // user-data, as read from the fleet repository
	NetworkConfig []byte // network-config version 2; nil without static addressing
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
	// MAC and Address are the guest NIC's MAC and its static address (with prefix) as
	// created: an address allocator reads them back from every VM on the host.
	MAC     string
	Address string
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
	// Firmware, for a disk booted without a kernel: FirmwareBIOS ("" means it) or
	// FirmwareUEFI.
	Firmware string
	// DiskSizeBytes grows the overlay to this virtual size; 0 keeps the golden disk's.
	// Smaller than the golden disk is ErrInvalidSpec.
	DiskSizeBytes int64
	// Seed, when set, is attached as a cloud-init NoCloud volume.
	Seed *Seed

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
	// AddressSources names where the driver looked for a guest address it learns after
	// boot (DHCP): "libvirt's DHCP leases", "the host's neighbour table", "the guest
	// agent". Empty when the address is known from the start.
	AddressSources []string
	// Drift lists, one human-readable line each, how the VM's definition or process
	// now differs from what it was created with ("memory: created with 128 MiB, now
	// 256 MiB"). Empty when the VM is as created, or when it was created by a Drover
	// that did not record what it created.
	Drift []string
}
