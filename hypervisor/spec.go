package hypervisor

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// minMemoryMiB is below what any Linux guest boots with; a smaller spec is a typo.
const minMemoryMiB = 16

// vmNameRE keeps names usable as libvirt domain names and as file and directory names
// in a driver's state directory: no dots, so a name can never reach outside it or
// collide with a suffix or a temporary name a driver makes beside it.
var vmNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// ValidName reports whether name is one a driver accepts for a VM. A name that is not
// can never belong to a VM Drover made.
func ValidName(name string) bool { return vmNameRE.MatchString(name) }

// Validate rejects a spec that cannot be created, before anything is made, with every
// problem it finds. networks lists the network modes the calling driver supports
// (NetworkUser, NetworkBridge, NetworkLibvirt); a mode outside it is a problem.
func (s Spec) Validate(networks ...string) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if s.Name == "" {
		bad("no name")
	} else if !ValidName(s.Name) {
		bad("name %q: want letters, digits, '-' or '_', at most 64", s.Name)
	}
	if s.CPUs < 1 {
		bad("cpus %d: want at least 1", s.CPUs)
	}
	if s.MemoryMiB < minMemoryMiB {
		bad("memory %d MiB: want at least %d MiB", s.MemoryMiB, minMemoryMiB)
	}
	if s.Kernel == "" && s.Disk == "" {
		bad("no kernel and no disk: nothing to boot")
	}
	if s.Kernel == "" && s.Initrd != "" {
		bad("initrd without a kernel")
	}
	if s.Kernel == "" && s.Cmdline != "" {
		bad("cmdline without a kernel")
	}
	for _, f := range []struct{ what, path string }{
		{"kernel", s.Kernel}, {"initrd", s.Initrd}, {"disk", s.Disk},
	} {
		if f.path == "" {
			continue
		}
		// A relative path would resolve against another process's working directory
		// (libvirtd's, or / for a daemonized QEMU), and an overlay records its
		// backing path as given.
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
	switch s.Firmware {
	case "", FirmwareBIOS:
	case FirmwareUEFI:
		if s.Kernel != "" || s.Disk == "" {
			bad("firmware %q: only for a disk booted without a kernel", s.Firmware)
		}
	default:
		bad("firmware %q: want %q or %q", s.Firmware, FirmwareBIOS, FirmwareUEFI)
	}
	if s.DiskSizeBytes < 0 {
		bad("disk size %d: want 0 (the golden disk's) or more", s.DiskSizeBytes)
	} else if s.DiskSizeBytes > 0 && s.Disk == "" {
		bad("disk size without a disk")
	}
	if s.Seed != nil && len(s.Seed.MetaData) == 0 {
		bad("cloud-init seed without meta-data")
	}
	if s.GuestPort < 1 || s.GuestPort > 65535 {
		bad("guest port %d: want 1-65535", s.GuestPort)
	}
	switch mode := s.Network.Mode; {
	case mode == "":
		bad("no network mode")
	case !slices.Contains(networks, mode):
		bad("network mode %q: want %s", mode, orList(networks))
	case mode == NetworkBridge && s.Network.Bridge == "":
		bad("network mode %q without a bridge", mode)
	case mode == NetworkLibvirt && s.Network.Network == "":
		bad("network mode %q without a network name", mode)
	}
	if m := s.Network.MAC; m != "" {
		if hw, err := net.ParseMAC(m); err != nil || len(hw) != 6 || hw[0]&1 == 1 {
			bad("mac %q: want a unicast 6-byte MAC such as 52:54:00:12:34:56", m)
		}
	}
	if a := s.Network.Address; a != "" {
		if pfx, err := netip.ParsePrefix(a); err != nil || !pfx.Addr().Is4() {
			bad("address %q: want an IPv4 address with its prefix, such as 198.18.0.10/24", a)
		} else if s.Network.Mode == NetworkUser {
			bad("address %s with user networking: a static address needs mode bridge or network", a)
		}
	}
	for _, g := range append([]string{s.Network.Gateway}, s.Network.DNS...) {
		if _, err := netip.ParseAddr(g); g != "" && err != nil {
			bad("gateway or dns %q: want an IP address", g)
		}
	}
	if s.Meta.Service == "" {
		bad("metadata has no service")
	}
	if s.Meta.SpecHash == "" {
		bad("metadata has no spec hash")
	}
	return errors.Join(errs...)
}

// orList spells a, b and c as "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// CreatedAt is the birth time to record for a VM made from s: s.Meta.Created when the
// caller set it, else now(). It is in UTC and rounded to the second, as the drivers
// store it, so Create and a later List report the same time whichever driver runs.
func (s Spec) CreatedAt(now func() time.Time) time.Time {
	created := s.Meta.Created
	if created.IsZero() {
		created = now()
	}
	return created.UTC().Truncate(time.Second)
}
