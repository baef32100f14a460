package libvirt

import (
	"context"
	"path/filepath"

	"libvirt.org/go/libvirtxml"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/cidata"
)

// Targets of Drover's disks in a domain.
const (
	diskTargetDev = "vda"
	seedTargetDev = "vdb"
)

func seedName(vm string) string     { return vm + ".cidata.iso" }
func uefiVarsName(vm string) string { return vm + ".uefi-vars.fd" }

// checkDisks refuses, before anything is made, a spec whose disks cannot be: an unsafe
// golden disk, a disk_size below it (hypervisor.ErrInvalidSpec), UEFI on a host without
// OVMF. It returns the golden disk and the overlay's size (0: the golden disk's).
func checkDisks(ctx context.Context, spec hypervisor.Spec) (hypervisor.Golden, int64, error) {
	var (
		g    hypervisor.Golden
		size int64
		err  error
	)
	if spec.Disk != "" {
		if g, err = hypervisor.InspectGoldenDisk(ctx, qemuImg, spec.Disk); err != nil {
			return hypervisor.Golden{}, 0, err
		}
		if size, err = hypervisor.OverlaySize(spec, g); err != nil {
			return hypervisor.Golden{}, 0, err
		}
	}
	if spec.Firmware == hypervisor.FirmwareUEFI {
		if err := hypervisor.CheckUEFI(); err != nil {
			return hypervisor.Golden{}, 0, err
		}
	}
	return g, size, nil
}

// makeFiles creates the files the domain opens besides the golden disk, in the state
// directory under the VM's name (so Sweep finds them should Drover die before the
// domain is defined): the overlay, the cloud-init seed and the UEFI variable store. Each
// is recorded in p.meta, which is how Destroy finds them, and in made, which removes
// them should Create fail.
func (d *Driver) makeFiles(ctx context.Context, p *domainParams, golden hypervisor.Golden, size int64, made *leftovers) error {
	spec := p.spec
	if spec.Disk != "" {
		p.backingFmt = golden.Format
		p.overlay = filepath.Join(d.dir, overlayName(spec.Name))
		p.meta.Overlay = p.overlay
		p.meta.CreatedWith.DiskSizeBytes = size
		made.files = append(made.files, p.overlay)
		if err := hypervisor.CreateOverlay(ctx, qemuImg, p.overlay, spec.Disk, golden.Format, size); err != nil {
			return err
		}
		if err := d.protectOverlay(p.overlay); err != nil {
			return err
		}
	}
	if spec.Seed != nil {
		p.seed = filepath.Join(d.dir, seedName(spec.Name))
		p.meta.Seed = p.seed
		made.files = append(made.files, p.seed)
		if err := cidata.Write(p.seed, *spec.Seed); err != nil {
			return err
		}
		if err := d.protectOverlay(p.seed); err != nil {
			return err
		}
		sum, err := cidata.Digest(p.seed)
		if err != nil {
			return err
		}
		p.meta.CreatedWith.SeedSHA256 = sum
	}
	if spec.Kernel == "" && spec.Firmware == hypervisor.FirmwareUEFI {
		p.uefiVars = filepath.Join(d.dir, uefiVarsName(spec.Name))
		p.meta.UEFIVars = p.uefiVars
		p.meta.CreatedWith.Firmware = hypervisor.FirmwareUEFI
		made.files = append(made.files, p.uefiVars)
		if err := hypervisor.CopyUEFIVars(p.uefiVars, 0o600); err != nil {
			return err
		}
		if err := d.protectOverlay(p.uefiVars); err != nil {
			return err
		}
	}
	return nil
}

// diskDevices are the domain's disks: the overlay over the golden disk, then the seed.
// A disk boot is <boot dev='hd'/>, which libvirt gives to the first disk: the overlay.
func diskDevices(p domainParams) []libvirtxml.DomainDisk {
	spec := p.spec
	var disks []libvirtxml.DomainDisk
	if spec.Disk != "" {
		disk := libvirtxml.DomainDisk{
			Device: "disk",
			Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2"},
			Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: p.overlay}},
			// Spelling out the backing image and its format means libvirt never
			// probes the golden image's format.
			BackingStore: &libvirtxml.DomainDiskBackingStore{
				Format: &libvirtxml.DomainDiskFormat{Type: p.backingFmt},
				Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: spec.Disk}},
			},
			Target: &libvirtxml.DomainDiskTarget{Dev: diskTargetDev, Bus: "virtio"},
		}
		disks = append(disks, disk)
	}
	if spec.Seed != nil {
		// A virtio disk, not a cdrom: Debian's cloud kernels have no AHCI driver, so a
		// SATA cdrom on q35 is invisible to them. Read-only: the guest cannot change
		// what it is told at its next boot.
		disks = append(disks, libvirtxml.DomainDisk{
			Device:   "disk",
			Driver:   &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw"},
			Source:   &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: p.seed}},
			Target:   &libvirtxml.DomainDiskTarget{Dev: seedTargetDev, Bus: "virtio"},
			ReadOnly: &libvirtxml.DomainDiskReadOnly{},
		})
	}
	return disks
}

// firmwareOS sets the domain's firmware: OVMF with the VM's own variable store for a
// UEFI disk boot; SeaBIOS (libvirt's default, nothing to say) otherwise.
func firmwareOS(p domainParams, os *libvirtxml.DomainOS) {
	if p.uefiVars == "" {
		return
	}
	os.Loader = &libvirtxml.DomainLoader{Path: hypervisor.OVMFCode, Readonly: "yes", Type: "pflash"}
	os.NVRam = &libvirtxml.DomainNVRam{NVRam: p.uefiVars}
}
