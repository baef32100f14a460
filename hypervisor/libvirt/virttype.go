package libvirt

import (
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/drover-dev/drover/hypervisor"
)

// chooseVirtType picks KVM only when this host has usable KVM and the QEMU that libvirt
// starts can use it too: libvirtd runs QEMU as its own user (libvirt-qemu on Debian),
// which cannot open a /dev/kvm that udev never opened up (containers, hosts without
// udev). Asking for KVM there makes every start fail.
func chooseVirtType(conn *libvirt.Connect, uri string, log *slog.Logger) string {
	if !isQEMUURI(uri) {
		return virtTCG
	}
	if !hypervisor.KVMAvailable() {
		log.Info("/dev/kvm is not usable: guests run under TCG")
		return virtTCG
	}
	if _, err := conn.GetDomainCapabilities("", "x86_64", "q35", virtKVM, 0); err != nil {
		log.Warn("libvirt cannot give KVM to QEMU: guests run under TCG", "err", err)
		return virtTCG
	}
	if isLocalURI(uri) {
		uid, gids, err := qemuUser(conn)
		if err != nil {
			log.Warn("cannot tell which user libvirt runs QEMU as: guests run under TCG", "err", err)
			return virtTCG
		}
		if uid >= 0 && !canOpenRW(hypervisor.KVMDevice, uid, gids) {
			log.Warn("libvirt's QEMU user cannot open /dev/kvm read-write (on Debian: chown root:kvm /dev/kvm; chmod 0660 /dev/kvm): guests run under TCG",
				"uid", uid, "gids", gids)
			return virtTCG
		}
	}
	return virtKVM
}

// isLocalURI reports whether uri names a libvirtd on this host (no host part), the only
// case where this host's /dev/kvm is the one QEMU opens.
func isLocalURI(uri string) bool {
	_, rest, ok := strings.Cut(uri, "://")
	return ok && (rest == "" || strings.HasPrefix(rest, "/"))
}

// qemuUser returns the uid and groups libvirt's DAC security driver runs QEMU with,
// from the host capabilities' base label ("+64055:+64055"); uid -1 when libvirt has no
// DAC driver, so QEMU runs with libvirtd's own identity.
func qemuUser(conn *libvirt.Connect) (int, []int, error) {
	label, err := qemuLabel(conn, virtKVM)
	if err != nil || label == "" {
		return -1, nil, err
	}
	uid, gid, err := parseDACLabel(label)
	if err != nil {
		return 0, nil, err
	}
	gids := []int{gid}
	// Supplementary groups count too: Debian puts libvirt-qemu in kvm.
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		if ids, err := u.GroupIds(); err == nil {
			for _, id := range ids {
				if g, err := strconv.Atoi(id); err == nil {
					gids = append(gids, g)
				}
			}
		}
	}
	return uid, gids, nil
}

// qemuLabel returns the DAC base label ("+uid:+gid") libvirt gives domains of
// virtType, from the host capabilities; "" when libvirt has no DAC driver.
func qemuLabel(conn *libvirt.Connect, virtType string) (string, error) {
	raw, err := conn.GetCapabilities()
	if err != nil {
		return "", fmt.Errorf("host capabilities: %w", err)
	}
	var caps libvirtxml.Caps
	if err := caps.Unmarshal(raw); err != nil {
		return "", fmt.Errorf("host capabilities: %w", err)
	}
	for _, sm := range caps.Host.SecModel {
		if sm.Name != "dac" {
			continue
		}
		for _, l := range sm.Labels {
			if l.Type == virtType {
				return strings.TrimSpace(l.Value), nil
			}
		}
	}
	return "", nil
}

// parseDACLabel parses libvirt's "+uid:+gid" DAC label.
func parseDACLabel(s string) (uid, gid int, err error) {
	u, g, ok := strings.Cut(strings.TrimSpace(s), ":")
	if ok {
		uid, err = strconv.Atoi(strings.TrimPrefix(u, "+"))
	}
	if ok && err == nil {
		gid, err = strconv.Atoi(strings.TrimPrefix(g, "+"))
	}
	if !ok || err != nil {
		return 0, 0, fmt.Errorf("dac label %q: want +uid:+gid", s)
	}
	return uid, gid, nil
}

// canOpenRW applies the permission bits of path as the kernel would for uid and gids.
func canOpenRW(path string, uid int, gids []int) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	return modeAllowsRW(fi.Mode().Perm(), int(st.Uid), int(st.Gid), uid, gids)
}

func modeAllowsRW(perm os.FileMode, ownerUID, ownerGID, uid int, gids []int) bool {
	if uid == 0 {
		return true
	}
	if uid == ownerUID {
		return perm&0o600 == 0o600
	}
	for _, g := range gids {
		if g == ownerGID {
			return perm&0o060 == 0o060
		}
	}
	return perm&0o006 == 0o006
}
