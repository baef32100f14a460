package libvirt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/drover-dev/drover/hypervisor"
)

// Virtualisation types for <domain type=...>.
const (
	virtKVM = "kvm"
	virtTCG = "qemu"
)

// userNetID names the user-mode netdev in QEMU's command line.
const userNetID = "drover0"

// userNICAddr puts the user-mode NIC on the q35 root bus at a slot libvirt does not
// hand out: libvirt fills slots from 1 upwards with pcie-root-ports.
const userNICAddr = "0x10"

// minMemoryMiB is below what any Linux guest boots with; a smaller spec is a typo.
const minMemoryMiB = 16

// vmNameRE keeps names usable as libvirt domain names and file names in the state
// directory; no dots, so a name can never reach outside it or collide with a suffix.
var vmNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// validateSpec rejects a spec that cannot be created, before anything is made.
func validateSpec(spec hypervisor.Spec) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if spec.Name == "" {
		bad("no name")
	} else if !vmNameRE.MatchString(spec.Name) {
		bad("name %q: want letters, digits, '-' or '_', at most 64", spec.Name)
	}
	if spec.CPUs < 1 {
		bad("cpus %d: want at least 1", spec.CPUs)
	}
	if spec.MemoryMiB < minMemoryMiB {
		bad("memory %d MiB: want at least %d MiB", spec.MemoryMiB, minMemoryMiB)
	}
	if spec.Kernel == "" && spec.Disk == "" {
		bad("no kernel and no disk: nothing to boot")
	}
	if spec.Kernel == "" && spec.Initrd != "" {
		bad("initrd without a kernel")
	}
	if spec.Kernel == "" && spec.Cmdline != "" {
		bad("cmdline without a kernel")
	}
	for _, f := range []struct{ what, path string }{
		{"kernel", spec.Kernel}, {"initrd", spec.Initrd}, {"disk", spec.Disk},
	} {
		if f.path == "" {
			continue
		}
		// libvirtd resolves relative paths against its own working directory.
		if !filepath.IsAbs(f.path) {
			bad("%s %q: want an absolute path", f.what, f.path)
			continue
		}
		if fi, err := os.Stat(f.path); err != nil {
			bad("%s: %w", f.what, err)
		} else if !fi.Mode().IsRegular() {
			bad("%s %q: not a regular file", f.what, f.path)
		}
	}
	if spec.GuestPort < 1 || spec.GuestPort > 65535 {
		bad("guest port %d: want 1-65535", spec.GuestPort)
	}
	switch spec.Network.Mode {
	case hypervisor.NetworkUser:
	case hypervisor.NetworkBridge:
		if spec.Network.Bridge == "" {
			bad("network mode %q without a bridge", spec.Network.Mode)
		}
	case hypervisor.NetworkLibvirt:
		if spec.Network.Network == "" {
			bad("network mode %q without a network name", spec.Network.Mode)
		}
	case "":
		bad("no network mode")
	default:
		bad("network mode %q: want %s, %s or %s", spec.Network.Mode,
			hypervisor.NetworkUser, hypervisor.NetworkBridge, hypervisor.NetworkLibvirt)
	}
	if spec.Meta.Service == "" {
		bad("metadata has no service")
	}
	if spec.Meta.SpecHash == "" {
		bad("metadata has no spec hash")
	}
	return errors.Join(errs...)
}

// domainParams is a validated spec plus what the driver decided for it.
type domainParams struct {
	spec       hypervisor.Spec
	virtType   string // virtKVM or virtTCG
	overlay    string // qcow2 overlay, when spec.Disk is set
	backingFmt string // format of spec.Disk
	consoleLog string
	hostPort   int // user networking
	meta       vmMetadata
}

// domainXML renders the persistent definition of a Drover VM.
func domainXML(p domainParams) (string, error) {
	spec := p.spec
	dom := &libvirtxml.Domain{
		Type:   p.virtType,
		Name:   spec.Name,
		Memory: &libvirtxml.DomainMemory{Value: uint(spec.MemoryMiB), Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: uint(spec.CPUs)},
		OS: &libvirtxml.DomainOS{
			Type:    &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "q35", Type: "hvm"},
			Kernel:  spec.Kernel,
			Initrd:  spec.Initrd,
			Cmdline: spec.Cmdline,
		},
		// ACPI is what the power button of Shutdown goes through.
		Features:   &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		// destroy, not preserve: a crashed guest is shut off with reason "crashed",
		// which List reports, and holds no memory meanwhile.
		OnCrash: "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			// The serial console goes to a file: the one place to look when a guest
			// does not come up.
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{
					File: &libvirtxml.DomainChardevSourceFile{Path: p.consoleLog},
				},
			}},
			MemBalloon: &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}
	if spec.Kernel == "" {
		dom.OS.BootDevices = []libvirtxml.DomainBootDevice{{Dev: "hd"}}
	}
	if spec.Disk != "" {
		dom.Devices.Disks = []libvirtxml.DomainDisk{{
			Device: "disk",
			Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2"},
			Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: p.overlay}},
			// Spelling out the backing image and its format means libvirt never
			// probes the golden image's format.
			BackingStore: &libvirtxml.DomainDiskBackingStore{
				Format: &libvirtxml.DomainDiskFormat{Type: p.backingFmt},
				Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: spec.Disk}},
			},
			Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
		}}
	}
	switch spec.Network.Mode {
	case hypervisor.NetworkUser:
		// libvirt 9.0 has neither the passt backend nor <portForward>, so the
		// forwarded user-mode NIC is passed to QEMU directly.
		var args []libvirtxml.DomainQEMUCommandlineArg
		for _, a := range userNetArgs(p.hostPort, spec.GuestPort) {
			args = append(args, libvirtxml.DomainQEMUCommandlineArg{Value: a})
		}
		dom.QEMUCommandline = &libvirtxml.DomainQEMUCommandline{Args: args}
	case hypervisor.NetworkBridge:
		dom.Devices.Interfaces = []libvirtxml.DomainInterface{{
			Source: &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: spec.Network.Bridge}},
			Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
		}}
		dom.Devices.Channels = []libvirtxml.DomainChannel{guestAgentChannel()}
	case hypervisor.NetworkLibvirt:
		dom.Devices.Interfaces = []libvirtxml.DomainInterface{{
			Source: &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: spec.Network.Network}},
			Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
		}}
		dom.Devices.Channels = []libvirtxml.DomainChannel{guestAgentChannel()}
	default:
		return "", fmt.Errorf("domain xml for %s: network mode %q", spec.Name, spec.Network.Mode)
	}

	meta, err := encodeMetadata(p.meta)
	if err != nil {
		return "", fmt.Errorf("domain xml for %s: %w", spec.Name, err)
	}
	dom.Metadata = &libvirtxml.DomainMetadata{XML: meta}

	out, err := dom.Marshal()
	if err != nil {
		return "", fmt.Errorf("domain xml for %s: %w", spec.Name, err)
	}
	return out, nil
}

// userNetArgs are the QEMU arguments of the forwarded user-mode NIC; drift detection
// compares a definition's against them.
func userNetArgs(hostPort, guestPort int) []string {
	netdev := "user,id=" + userNetID + ",hostfwd=tcp:127.0.0.1:" +
		strconv.Itoa(hostPort) + "-:" + strconv.Itoa(guestPort)
	device := "virtio-net-pci,netdev=" + userNetID + ",bus=pcie.0,addr=" + userNICAddr + ",romfile="
	return []string{"-netdev", netdev, "-device", device}
}

// guestAgentChannel lets a guest that runs qemu-guest-agent report its addresses when
// they are not in a libvirt DHCP lease (a host bridge).
func guestAgentChannel() libvirtxml.DomainChannel {
	return libvirtxml.DomainChannel{
		Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: "bind"}},
		Target: &libvirtxml.DomainChannelTarget{VirtIO: &libvirtxml.DomainChannelTargetVirtIO{Name: "org.qemu.guest_agent.0"}},
	}
}

// isQEMUURI reports whether uri reaches libvirt's QEMU driver (qemu:///system,
// qemu+ssh://host/system, ...), the only one where <domain type='kvm'> means KVM.
func isQEMUURI(uri string) bool {
	scheme, _, ok := strings.Cut(uri, ":")
	if !ok {
		return false
	}
	driver, _, _ := strings.Cut(scheme, "+")
	return driver == "qemu"
}
