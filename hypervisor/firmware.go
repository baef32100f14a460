package hypervisor

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// OVMF from Debian's ovmf package: the UEFI firmware a FirmwareUEFI VM boots. The code
// is shared and read-only; the variable store (boot entries the guest's installer
// writes) is per VM, a copy of the template made at Create and removed with the VM.
// The 4M builds are the ones Debian 12 ships for q35 without Secure Boot (the
// .secboot/.ms variants need SMM and enrolled keys).
const (
	OVMFCode         = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVarsTemplate = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// ErrNoFirmware: the firmware a spec asks for is not installed on this host.
var ErrNoFirmware = errors.New("uefi firmware not installed (install Debian's ovmf package)")

// CheckUEFI reports ErrNoFirmware, naming the missing file, unless OVMF is installed.
func CheckUEFI() error {
	for _, f := range []string{OVMFCode, OVMFVarsTemplate} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrNoFirmware, f, err)
		}
	}
	return nil
}

// CopyUEFIVars writes a fresh copy of OVMF's variable store template to dst with mode
// perm; dst must not exist (a leftover is a sweep's to remove, never reused: it would
// carry another VM's boot entries).
func CopyUEFIVars(dst string, perm os.FileMode) (err error) {
	src, err := os.Open(OVMFVarsTemplate)
	if err != nil {
		return fmt.Errorf("copy uefi vars: %w: %w", ErrNoFirmware, err)
	}
	defer src.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("copy uefi vars: %w", err)
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("copy uefi vars: %w", cerr)
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	// The template is 540 KiB; bound the copy anyway, it is a file on the host.
	if _, err := io.Copy(out, io.LimitReader(src, 64<<20)); err != nil {
		return fmt.Errorf("copy uefi vars: %w", err)
	}
	return out.Sync()
}
