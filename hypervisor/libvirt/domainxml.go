package libvirt

import (
	"fmt"
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

// domainParams is a validated spec plus what the driver decided for it.
type domainParams struct {
	spec       hypervisor.Spec
	virtType   string // virtKVM or virtTCG
	overlay    string // qcow2 overlay, when spec.Disk is set
	backingFmt string // format of spec.Disk
	seed       string // cloud-init seed volume, when spec.Seed is set
	uefiVars   string // the VM's UEFI variable store, for a UEFI disk boot
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
		firmwareOS(p, dom.OS)
	}
	dom.Devices.Disks = diskDevices(p)
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
			MAC:    interfaceMAC(spec.Network.MAC),
			Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
		}}
		dom.Devices.Channels = []libvirtxml.DomainChannel{guestAgentChannel()}
	case hypervisor.NetworkLibvirt:
		dom.Devices.Interfaces = []libvirtxml.DomainInterface{{
			Source: &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: spec.Network.Network}},
			MAC:    interfaceMAC(spec.Network.MAC),
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
//
// restrict=on isolates the guest: without it, 10.0.2.2 is the host's loopback, and a
// guest reaches every service bound to 127.0.0.1 there (Consul's API, Drover's status).
// Connections the host makes through hostfwd are not affected, so the service port
// keeps working; the guest can open no connection at all, to the host or beyond.
func userNetArgs(hostPort, guestPort int) []string {
	return userNetArgsWith(hostPort, guestPort, ",restrict=on")
}

func userNetArgsWith(hostPort, guestPort int, restrict string) []string {
	netdev := "user,id=" + userNetID + restrict + ",hostfwd=tcp:127.0.0.1:" +
		strconv.Itoa(hostPort) + "-:" + strconv.Itoa(guestPort)
	device := "virtio-net-pci,netdev=" + userNetID + ",bus=pcie.0,addr=" + userNICAddr + ",romfile="
	return []string{"-netdev", netdev, "-device", device}
}

// unrestrictedUserNetArgs are what Drover defined before it restricted user networking.
// A VM defined with them is reported as drift, so it is replaced by an isolated one.
func unrestrictedUserNetArgs(hostPort, guestPort int) []string {
	return userNetArgsWith(hostPort, guestPort, "")
}

// interfaceMAC is the <mac> of Drover's NIC; none lets libvirt pick one.
func interfaceMAC(mac string) *libvirtxml.DomainInterfaceMAC {
	if mac == "" {
		return nil
	}
	return &libvirtxml.DomainInterfaceMAC{Address: mac}
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
