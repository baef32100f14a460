package testenv

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// Versions the tiny disk's guest reports on /healthz, by the firmware that booted it.
const (
	TinyDiskBIOSVersion = "bios"
	TinyDiskUEFIVersion = "uefi"
)

// tinyDiskSize is the tiny disk's size: the kernel and initrd, with room for FAT32.
const tinyDiskSize = 64 << 20

// syslinuxMBR is syslinux's master boot record, which chains to the active partition.
const syslinuxMBR = "/usr/lib/syslinux/mbr/mbr.bin"

// TinyDisk is a small raw disk that boots the test guest (testenv's kernel and healthy
// initrd) under either firmware, from one FAT32 EFI system partition: SeaBIOS through
// syslinux, OVMF through its UEFI shell's startup.nsh, which starts the kernel's EFI
// stub. The guest's /healthz answers TinyDiskBIOSVersion or TinyDiskUEFIVersion, so a
// test knows which firmware booted it. Made with go-diskfs and syslinux in about a
// second; nothing is mounted.
func TinyDisk(t testing.TB, imgs GuestImages) File {
	t.Helper()
	if _, err := exec.LookPath("syslinux"); err != nil {
		Unavailable(t, "tiny disk: syslinux not found (install syslinux and mtools)")
	}
	if _, err := os.Stat(syslinuxMBR); err != nil {
		Unavailable(t, "tiny disk: %v (install syslinux-common)", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	p := filepath.Join(t.TempDir(), "tiny.raw")
	if err := buildTinyDisk(ctx, p, imgs); err != nil {
		t.Fatalf("tiny disk: %v", err)
	}
	// Readable by libvirt's QEMU, which runs as another user.
	for _, d := range []string{filepath.Dir(filepath.Dir(p)), filepath.Dir(p)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f, err := hashFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func buildTinyDisk(ctx context.Context, p string, imgs GuestImages) error {
	const start = 2048 // sectors: the partition starts at 1 MiB
	raw, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer raw.Close()
	if err := raw.Truncate(tinyDiskSize); err != nil {
		return err
	}
	// One active partition of type EF (EFI system) over the rest of the disk.
	var entry [16]byte
	entry[0] = 0x80
	entry[4] = 0xef
	binary.LittleEndian.PutUint32(entry[8:], start)
	binary.LittleEndian.PutUint32(entry[12:], tinyDiskSize/512-start)
	if _, err := raw.WriteAt(entry[:], 446); err != nil {
		return err
	}
	if _, err := raw.WriteAt([]byte{0x55, 0xaa}, 510); err != nil {
		return err
	}
	fs, err := fat32.Create(file.New(raw, false), tinyDiskSize-start*512, start*512, 512, "DROVERTINY", false)
	if err != nil {
		return fmt.Errorf("fat32: %w", err)
	}
	biosCmdline := GuestCmdline(TinyDiskBIOSVersion)
	uefiCmdline := GuestCmdline(TinyDiskUEFIVersion)
	files := map[string]string{
		"/syslinux.cfg": "DEFAULT guest\nTIMEOUT 0\nPROMPT 0\nLABEL guest\n  KERNEL /vmlinuz\n  INITRD /initrd.gz\n  APPEND " + biosCmdline + "\n",
		// OVMF finds no boot loader on the disk and starts its shell, which runs this.
		"/startup.nsh": "fs0:\\vmlinuz initrd=\\initrd.gz " + uefiCmdline + "\r\n",
	}
	for name, content := range files {
		if err := writeFS(fs, name, strings.NewReader(content)); err != nil {
			return err
		}
	}
	for name, src := range map[string]string{"/vmlinuz": imgs.Kernel.Path, "/initrd.gz": imgs.Initrd.Path} {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		err = writeFS(fs, name, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	if err := raw.Close(); err != nil {
		return err
	}
	// syslinux writes its boot sector and ldlinux.sys into the partition (through mtools,
	// on the file itself); the MBR then chains to the active partition.
	install := exec.CommandContext(ctx, "syslinux", "--install", "--offset", fmt.Sprint(start*512), p)
	if out, err := install.CombinedOutput(); err != nil {
		return fmt.Errorf("syslinux --install: %w: %s", err, tail(out))
	}
	mbrCode, err := os.ReadFile(syslinuxMBR)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(mbrCode[:min(len(mbrCode), 440)], 0); err != nil {
		return fmt.Errorf("write mbr: %w", err)
	}
	return f.Close()
}

func writeFS(fs filesystem.FileSystem, name string, r io.Reader) error {
	f, err := fs.OpenFile(name, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	return f.Close()
}
