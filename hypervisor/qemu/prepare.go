package qemu

import (
	"context"
	"fmt"
	"os"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/cidata"
)

// Device ids of the drives Drover attaches, which QMP's query-block reports them by.
const (
	diskDrive = "disk0"
	seedDrive = "seed0"
)

// diskPlan is what checkDisks decided for a spec before anything is made.
type diskPlan struct {
	golden      hypervisor.Golden
	overlaySize int64 // 0: the golden disk's
}

// checkDisks refuses, before the VM's entry exists, a spec whose disks cannot be made:
// an unsafe golden disk, a disk_size below it (hypervisor.ErrInvalidSpec), UEFI on a
// host without OVMF.
func (d *Driver) checkDisks(ctx context.Context, spec hypervisor.Spec) (diskPlan, error) {
	var plan diskPlan
	if spec.Disk != "" {
		// Only raw or a self-contained qcow2 (hypervisor.ErrUnsafeImage otherwise);
		// its format is then stated to qemu-img and, through the overlay, to QEMU,
		// which never probes it.
		g, err := hypervisor.InspectGoldenDisk(ctx, d.qemuImg, spec.Disk)
		if err != nil {
			return diskPlan{}, err
		}
		plan.golden = g
		if plan.overlaySize, err = hypervisor.OverlaySize(spec, g); err != nil {
			return diskPlan{}, err
		}
	}
	if spec.Firmware == hypervisor.FirmwareUEFI {
		if err := hypervisor.CheckUEFI(); err != nil {
			return diskPlan{}, err
		}
	}
	return plan, nil
}

// makeDisks creates, inside the VM's entry, the files its QEMU opens besides the golden
// disk: the overlay, the cloud-init seed and the UEFI variable store. They are all in
// the entry, so removing the entry (Destroy, or a sweep after a kill -9) removes them.
// Each is readable by Drover's user only: QEMU runs as it here, and the overlay holds
// what the guest wrote, the seed the operator's user-data.
func (d *Driver) makeDisks(ctx context.Context, p vmPaths, spec hypervisor.Spec, plan diskPlan) error {
	if spec.Disk != "" {
		if err := hypervisor.CreateOverlay(ctx, d.qemuImg, p.overlay, spec.Disk, plan.golden.Format, plan.overlaySize); err != nil {
			return err
		}
		// qemu-img leaves the mode to the umask.
		if err := os.Chmod(p.overlay, 0o600); err != nil {
			return fmt.Errorf("create %s: overlay mode: %w", spec.Name, err)
		}
	}
	if spec.Seed != nil {
		if err := cidata.Write(p.seed, *spec.Seed); err != nil {
			return err
		}
	}
	if spec.Firmware == hypervisor.FirmwareUEFI {
		if err := hypervisor.CopyUEFIVars(p.uefiVars, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// diskArgs are QEMU's arguments for the VM's firmware and disks. A kernel boot keeps
// the one virtio drive it always had, so VMs made before disk boots existed show no
// drift. A disk boot names its disk as the first boot device, so neither the seed nor
// anything else is tried before it.
func diskArgs(p vmPaths, spec hypervisor.Spec) []string {
	var a []string
	diskBoot := spec.Kernel == "" && spec.Disk != ""
	if diskBoot && spec.Firmware == hypervisor.FirmwareUEFI {
		a = append(a,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+optEscape(hypervisor.OVMFCode),
			"-drive", "if=pflash,format=raw,unit=1,file="+optEscape(p.uefiVars))
	}
	switch {
	case diskBoot:
		a = append(a,
			"-drive", "file="+optEscape(p.overlay)+",format=qcow2,if=none,id="+diskDrive,
			"-device", "virtio-blk-pci,drive="+diskDrive+",bootindex=1")
	case spec.Disk != "":
		a = append(a, "-drive", "file="+optEscape(p.overlay)+",format=qcow2,if=virtio")
	}
	if spec.Seed != nil {
		// A virtio disk, not a cdrom: Debian's cloud kernels have no AHCI driver, so a
		// SATA cdrom on q35 is invisible to them, and virtio-scsi would need one more
		// controller. Read-only: the guest cannot change what it is told at the next boot.
		a = append(a,
			"-drive", "file="+optEscape(p.seed)+",format=raw,if=none,id="+seedDrive+",readonly=on",
			"-device", "virtio-blk-pci,drive="+seedDrive)
	}
	return a
}
