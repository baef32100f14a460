package hypervisortest

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/cidata"
)

// AttachedDisk is one disk of a VM as the hypervisor has it attached.
type AttachedDisk struct {
	File     string
	ReadOnly bool
}

// diskBoot: a disk without a kernel boots its own bootloader under BIOS and UEFI, with
// a cloud-init seed attached read-only beside it; destroying the VM removes the seed
// and the UEFI variable store with everything else. A disk_size below the golden disk
// is refused before anything is made.
func (s *suite) diskBoot(t *testing.T) {
	if s.h.Images.Disk == "" {
		t.Skip("the harness has no bootable test disk (Images.Disk)")
	}
	for _, fw := range []string{hypervisor.FirmwareBIOS, hypervisor.FirmwareUEFI} {
		t.Run(fw, func(t *testing.T) { s.diskBootWith(t, fw) })
	}
	t.Run("DiskSizeBelowGolden", s.diskSizeBelowGolden)
}

func (s *suite) diskSpec(name, firmware string) hypervisor.Spec {
	spec := s.spec(name, firmware)
	spec.Kernel, spec.Initrd, spec.Cmdline = "", "", ""
	spec.Disk, spec.Firmware = s.h.Images.Disk, firmware
	// OVMF keeps a good part of 128 MiB for itself: the kernel's EFI stub then hangs,
	// silently, loading the initrd.
	spec.MemoryMiB = 256
	return spec
}

func (s *suite) diskBootWith(t *testing.T, firmware string) {
	if firmware == hypervisor.FirmwareUEFI {
		if err := hypervisor.CheckUEFI(); err != nil {
			s.h.Unavailable(t, "%v", err)
		}
	}
	env := s.h.New(t)
	if env.Disks == nil {
		t.Fatal("conformance harness: Env.Disks is not set")
	}
	ctx := t.Context()
	spec := s.diskSpec(s.name("disk-"+firmware), firmware)
	golden := fileSize(t, spec.Disk)
	spec.DiskSizeBytes = 2 * golden
	spec.Seed = &hypervisor.Seed{
		MetaData: []byte(`{"instance-id": "` + spec.Name + `", "local-hostname": "` + spec.Name + `"}` + "\n"),
		UserData: []byte("#cloud-config\n"),
	}
	DestroyAtEnd(t, env.Driver, spec.Name)
	vm, err := env.Driver.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create with disk boot (%s): %v", firmware, err)
	}
	if s.h.RunsGuests {
		// The test disk's guest says which firmware booted it.
		if err := waitHealthy(ctx, vm, firmware, s.h.BootTimeout); err != nil {
			t.Fatalf("disk boot under %s: %v", firmware, err)
		}
	}

	disks := env.Disks(t, spec.Name)
	var seeds, writable []AttachedDisk
	for _, d := range disks {
		if d.ReadOnly {
			seeds = append(seeds, d)
		} else {
			writable = append(writable, d)
		}
	}
	if len(seeds) != 1 || len(writable) != 1 {
		t.Fatalf("attached disks %+v: want the overlay read-write and the seed read-only", disks)
	}
	label, files, err := cidata.Read(seeds[0].File)
	if err != nil {
		t.Fatalf("read the attached seed: %v", err)
	}
	if label != cidata.Label || string(files["meta-data"]) != string(spec.Seed.MetaData) || string(files["user-data"]) != string(spec.Seed.UserData) {
		t.Errorf("attached seed %s: label %q files %q, want cidata with the spec's meta-data and user-data", seeds[0].File, label, files)
	}
	if writable[0].File == spec.Disk {
		t.Errorf("the golden disk %s is attached writable; want an overlay over it", spec.Disk)
	}
	if got := virtualSize(t, writable[0].File); got != spec.DiskSizeBytes {
		t.Errorf("overlay %s: virtual size %d, want disk_size %d", writable[0].File, got, spec.DiskSizeBytes)
	}
	if got, err := env.Driver.Get(ctx, spec.Name); err != nil || len(got.Drift) != 0 {
		t.Errorf("Get after Create: drift %q (err %v), want none", got.Drift, err)
	}
	traces := env.Traces(spec.Name)
	if !slices.Contains(traces, seeds[0].File) {
		t.Errorf("traces %q do not list the seed %s: a leftover seed would go unseen", traces, seeds[0].File)
	}

	if err := env.Driver.Destroy(ctx, spec.Name); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if got := env.Traces(spec.Name); len(got) > 0 {
		t.Errorf("after Destroy: want no traces (seed, variable store, overlay), got %q", got)
	}
	if _, err := os.Stat(seeds[0].File); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("seed %s after Destroy: %v, want it removed", seeds[0].File, err)
	}
}

func (s *suite) diskSizeBelowGolden(t *testing.T) {
	env := s.h.New(t)
	spec := s.diskSpec(s.name("disk-small"), hypervisor.FirmwareBIOS)
	spec.DiskSizeBytes = fileSize(t, spec.Disk) / 2
	DestroyAtEnd(t, env.Driver, spec.Name)
	_, err := env.Driver.Create(t.Context(), spec)
	if !errors.Is(err, hypervisor.ErrInvalidSpec) || !strings.Contains(err.Error(), "below the golden disk") {
		t.Fatalf("Create with disk_size below the golden disk: got %v, want ErrInvalidSpec saying so", err)
	}
	if got := env.Traces(spec.Name); len(got) > 0 {
		t.Errorf("after a refused Create: want nothing made, got %q", got)
	}
}

// fileSize is a raw golden disk's virtual size: its length.
func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// virtualSize is a qcow2 image's virtual size, read while QEMU holds it open.
func virtualSize(t *testing.T, p string) int64 {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "qemu-img", "info", "-U", "--output=json", "-f", "qcow2", p).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", p, err)
	}
	var info struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("qemu-img info %s: %v", p, err)
	}
	return info.VirtualSize
}
