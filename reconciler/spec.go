package reconciler

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/sources"
)

// Tag marks every Consul instance Drover registers.
const Tag = "drover"

// SpecHash is the identity of a service's VM-relevant spec: everything that is fixed at a
// VM's birth. Two VMs with the same hash are interchangeable; any difference means
// replacement. Replicas and the update block are deliberately absent: scaling or tuning
// a rollout never replaces a VM. Images enter by digest, not URL, so moving an image to
// another mirror is not a change.
func SpecHash(s sources.Service) string {
	digest := func(a *sources.Artifact) string {
		if a == nil {
			return ""
		}
		return a.SHA256
	}
	identity := struct {
		Version   string `json:"version"`
		CPUs      int    `json:"cpus"`
		MemoryMiB int    `json:"memory_mib"`
		Kernel    string `json:"kernel"`
		Initrd    string `json:"initrd"`
		Cmdline   string `json:"cmdline"`
		Disk      string `json:"disk"`
		Network   sources.Network
		Port      int `json:"port"`
		Check     sources.Check
		// Added with disk boots and cloud-init: empty when unused, so the hash of a
		// service that uses none of them is what it was before they existed.
		Firmware      string `json:"firmware,omitempty"`
		DiskSizeBytes int64  `json:"disk_size,omitempty"`
		UserData      string `json:"user_data,omitempty"`
	}{
		Version: s.Version, CPUs: s.CPUs, MemoryMiB: s.MemoryMiB,
		Kernel: digest(s.Image.Kernel), Initrd: digest(s.Image.Initrd), Cmdline: s.Image.Cmdline,
		Disk: digest(s.Image.Disk), Network: s.Network, Port: s.Port, Check: s.Check,
		DiskSizeBytes: s.Image.DiskSizeBytes,
	}
	if s.Image.Firmware != sources.FirmwareBIOS {
		identity.Firmware = s.Image.Firmware // BIOS is what a disk booted before firmware could be chosen
	}
	if s.CloudInit != nil {
		// The content, not the path: renaming the file changes nothing in the guest.
		sum := sha256.Sum256(s.CloudInit.Content)
		identity.UserData = hex.EncodeToString(sum[:])
	}
	data, err := json.Marshal(identity)
	if err != nil {
		// Marshalling plain strings and ints cannot fail; a failure is a programming error.
		panic(fmt.Sprintf("spec hash: %v", err))
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// shortHash is the part of a spec hash that goes into VM names.
func shortHash(hash string) string {
	if len(hash) < 8 {
		return hash
	}
	return hash[:8]
}

// shortRev shortens a commit for logs and messages.
func shortRev(commit string) string {
	if len(commit) < 12 {
		return commit
	}
	return commit[:12]
}

// seedMeta is a VM's cloud-init meta-data. cloud-init reads meta-data as YAML; JSON is
// YAML, and encoding/json quotes every value, so no name or version can change its
// meaning. User-data templates reach the drover map as ds.meta_data.drover.
type seedMeta struct {
	InstanceID    string     `json:"instance-id"`
	LocalHostname string     `json:"local-hostname"`
	Drover        droverMeta `json:"drover"`
}

type droverMeta struct {
	Fleet    string `json:"fleet"`
	Service  string `json:"service"`
	Version  string `json:"version"`
	Revision string `json:"revision"`
	// Address is the guest's static address without its prefix; empty with DHCP or
	// user networking, where the guest learns its own.
	Address string `json:"address"`
}

// withSeed returns spec with its cloud-init seed, when svc has a cloud_init block or
// the spec already carries a network-config (static addressing): meta-data for this VM
// (instance-id and local-hostname are its name, so a replacement is a new instance to
// cloud-init), the service's user-data as read from the fleet repository (none without
// cloud_init), and the network-config as it was.
func withSeed(svc sources.Service, spec hypervisor.Spec) hypervisor.Spec {
	if svc.CloudInit == nil && spec.Seed == nil {
		return spec
	}
	addr, _, _ := strings.Cut(spec.Network.Address, "/")
	meta, err := json.Marshal(seedMeta{
		InstanceID:    spec.Name,
		LocalHostname: spec.Name,
		Drover: droverMeta{
			Fleet: spec.Meta.Fleet, Service: spec.Meta.Service, Version: spec.Meta.Version,
			Revision: spec.Meta.Revision, Address: addr,
		},
	})
	if err != nil {
		panic(fmt.Sprintf("seed meta-data: %v", err)) // strings only: cannot fail
	}
	seed := &hypervisor.Seed{MetaData: append(meta, '\n')}
	if svc.CloudInit != nil {
		seed.UserData = svc.CloudInit.Content
	}
	if spec.Seed != nil {
		seed.NetworkConfig = spec.Seed.NetworkConfig
	}
	spec.Seed = seed
	return spec
}

// firmware is the hypervisor's firmware for img: the fleet's choice for a disk booted
// without a kernel, nothing otherwise.
func firmware(img sources.Image) string {
	if img.Kernel != nil || img.Disk == nil {
		return ""
	}
	if img.Firmware == sources.FirmwareUEFI {
		return hypervisor.FirmwareUEFI
	}
	return hypervisor.FirmwareBIOS
}
