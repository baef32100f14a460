package libvirt

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"time"

	"github.com/drover-dev/drover/hypervisor"
)

// metadataNS is the namespace of Drover's element inside a domain's <metadata>. It is
// how Drover recognises its own domains, so it never changes within a major version.
const metadataNS = "https://drover.dev/xmlns/vm/1"

// vmMetadata is Drover's record on a domain: the hypervisor.Metadata plus what List
// needs to report the VM and Destroy needs to clean up after it, so that a restarted
// Drover knows everything from the domain alone.
//
// The XMLName has no namespace on purpose: libvirt's GetMetadata returns the element
// with its namespace stripped; encodeMetadata puts it back when writing.
type vmMetadata struct {
	XMLName     xml.Name `xml:"vm"`
	Fleet       string   `xml:"fleet,omitempty"`
	Service     string   `xml:"service"`
	SpecHash    string   `xml:"spec_hash"`
	Revision    string   `xml:"revision"`
	Version     string   `xml:"version"`
	Created     string   `xml:"created"` // RFC 3339, UTC
	NetworkMode string   `xml:"network_mode"`
	HostPort    int      `xml:"host_port,omitempty"` // user networking only
	GuestPort   int      `xml:"guest_port"`
	Overlay     string   `xml:"overlay,omitempty"` // qcow2 overlay Drover created, if any
	ConsoleLog  string   `xml:"console_log,omitempty"`
	// MAC and Address are the NIC's MAC and static address (with prefix) on a bridge or
	// libvirt network; Address is empty under DHCP.
	MAC      string `xml:"mac,omitempty"`
	Address  string `xml:"address,omitempty"`
	Seed     string `xml:"seed,omitempty"`      // cloud-init seed volume Drover created, if any
	UEFIVars string `xml:"uefi_vars,omitempty"` // the VM's UEFI variable store, if any
	// CreatedWith is what the definition held at Create, so List can tell a
	// definition edited since. Domains created before it was recorded have none and
	// report no drift.
	CreatedWith *createdWith `xml:"created_with,omitempty"`
}

// createdWith is the part of the spec that ends up in the domain definition. The
// overlay, the network mode and the ports are in vmMetadata already.
type createdWith struct {
	CPUs      int    `xml:"cpus"`
	MemoryMiB int    `xml:"memory_mib"`
	Kernel    string `xml:"kernel,omitempty"`
	Initrd    string `xml:"initrd,omitempty"`
	Cmdline   string `xml:"cmdline,omitempty"`
	Disk      string `xml:"disk,omitempty"` // the golden image: the overlay's backing file
	Bridge    string `xml:"bridge,omitempty"`
	Network   string `xml:"network,omitempty"`
	// Added with disk boots and cloud-init; empty (or 0) when unused.
	Firmware      string `xml:"firmware,omitempty"`        // uefi, for a disk boot
	DiskSizeBytes int64  `xml:"disk_size_bytes,omitempty"` // the overlay's grown size
	SeedSHA256    string `xml:"seed_sha256,omitempty"`     // the seed's content as written
}

func encodeMetadata(m vmMetadata) (string, error) {
	var buf bytes.Buffer
	enc := xml.NewEncoder(&buf)
	start := xml.StartElement{Name: xml.Name{Space: metadataNS, Local: "vm"}}
	if err := enc.EncodeElement(m, start); err != nil {
		return "", fmt.Errorf("encode drover metadata: %w", err)
	}
	if err := enc.Close(); err != nil {
		return "", fmt.Errorf("encode drover metadata: %w", err)
	}
	return buf.String(), nil
}

// decodeMetadata parses and checks Drover's element. A record missing what Drover
// relies on is an error rather than a half-known VM.
func decodeMetadata(s string) (vmMetadata, hypervisor.Metadata, error) {
	var m vmMetadata
	if err := xml.Unmarshal([]byte(s), &m); err != nil {
		return vmMetadata{}, hypervisor.Metadata{}, fmt.Errorf("parse drover metadata: %w", err)
	}
	if m.Service == "" {
		return vmMetadata{}, hypervisor.Metadata{}, fmt.Errorf("parse drover metadata: no service")
	}
	if m.SpecHash == "" {
		return vmMetadata{}, hypervisor.Metadata{}, fmt.Errorf("parse drover metadata: no spec_hash")
	}
	created, err := time.Parse(time.RFC3339, m.Created)
	if err != nil {
		return vmMetadata{}, hypervisor.Metadata{}, fmt.Errorf("parse drover metadata: created: %w", err)
	}
	switch m.NetworkMode {
	case hypervisor.NetworkUser:
		if m.HostPort < 1 || m.HostPort > 65535 {
			return vmMetadata{}, hypervisor.Metadata{}, fmt.Errorf("parse drover metadata: user networking with host_port %d", m.HostPort)
		}
	case hypervisor.NetworkBridge, hypervisor.NetworkLibvirt:
	default:
		return vmMetadata{}, hypervisor.Metadata{}, fmt.Errorf("parse drover metadata: unknown network_mode %q", m.NetworkMode)
	}
	return m, hypervisor.Metadata{
		Fleet:    m.Fleet,
		Service:  m.Service,
		SpecHash: m.SpecHash,
		Revision: m.Revision,
		Version:  m.Version,
		Created:  created.UTC(),
		MAC:      m.MAC,
		Address:  m.Address,
	}, nil
}
