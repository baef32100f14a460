package testenv

import (
	"os"
	"testing"
)

// The tiny disk is an MBR disk with one active EFI system partition from 1 MiB;
// booting it under both firmwares is the conformance suite's DiskBoot.
func TestTinyDisk(t *testing.T) {
	f := TinyDisk(t, Images(t))
	data, err := os.ReadFile(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != tinyDiskSize {
		t.Fatalf("size %d, want %d", len(data), tinyDiskSize)
	}
	entry := data[446:462]
	if data[510] != 0x55 || data[511] != 0xaa || entry[0] != 0x80 || entry[4] != 0xef {
		t.Errorf("mbr: signature %x, partition %x; want 55aa and an active type-ef partition", data[510:512], entry)
	}
	if data[0] == 0 && data[1] == 0 {
		t.Errorf("no boot code in the mbr")
	}
	// syslinux put its boot sector into the partition: FAT32's at 1 MiB.
	if boot := data[2048*512:][82:90]; string(boot) != "FAT32   " {
		t.Errorf("partition boot sector: fs type %q, want FAT32", boot)
	}
}
