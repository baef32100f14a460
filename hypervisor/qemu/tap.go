package qemu

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"

	"github.com/drover-dev/drover/hypervisor"
)

// A VM on a host bridge gets a tap of its own, made by the driver over netlink (no
// helper binary, no qemu-bridge-helper setuid), enslaved to the bridge and handed to
// QEMU by name. Its name is tapPrefix, four hex digits of the state directory and
// eight of the VM's name: 14 characters, under IFNAMSIZ, and a Sweep removes only the
// taps of its own state directory, never another Drover's.
const tapPrefix = "dr"

// tapName is the tap of the VM called name under the state directory root.
func tapName(root, name string) string {
	r, n := sha256.Sum256([]byte(root)), sha256.Sum256([]byte(name))
	return tapPrefix + hex.EncodeToString(r[:2]) + hex.EncodeToString(n[:4])
}

// ownTapPrefix starts the names of this driver's taps.
func (d *Driver) ownTapPrefix() string { return tapName(d.root, "")[:len(tapPrefix)+4] }

// makeTap creates the persistent tap for a VM and puts it on bridge, up. QEMU opens
// it by name with IFF_TAP|IFF_NO_PI (and IFF_VNET_HDR), the flags it is made with.
func makeTap(tap, bridge string) error {
	if err := hypervisor.CheckBridge(bridge); err != nil {
		return err
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("tap %s: bridge %s: %w", tap, bridge, err)
	}
	link := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: tap},
		Mode:      netlink.TUNTAP_MODE_TAP,
		Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR,
	}
	if err := netlink.LinkAdd(link); err != nil {
		if errors.Is(err, syscall.EPERM) {
			return fmt.Errorf("create tap %s: %w (a VM on a bridge needs root or CAP_NET_ADMIN with the qemu driver)", tap, err)
		}
		return fmt.Errorf("create tap %s: %w", tap, err)
	}
	ok := false
	defer func() {
		if !ok {
			removeTap(tap)
		}
	}()
	if err := netlink.LinkSetMaster(link, br); err != nil {
		return fmt.Errorf("tap %s onto bridge %s: %w", tap, bridge, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("tap %s up: %w", tap, err)
	}
	ok = true
	return nil
}

// removeTap deletes a tap; one that is gone already is fine.
func removeTap(tap string) error {
	link, err := netlink.LinkByName(tap)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove tap %s: %w", tap, err)
	}
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("remove tap %s: %w", tap, err)
	}
	return nil
}

// tapDrift says how a running VM's tap differs from what Create made: gone, or moved
// to another bridge.
func tapDrift(rec record) []string {
	link, err := netlink.LinkByName(rec.Tap)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		return []string{fmt.Sprintf("network: tap %s removed (created on bridge %s)", rec.Tap, rec.Bridge)}
	case err != nil:
		return nil
	}
	now := "no bridge"
	if idx := link.Attrs().MasterIndex; idx > 0 {
		if m, err := netlink.LinkByIndex(idx); err == nil {
			now = "bridge " + m.Attrs().Name
		}
	}
	if now != "bridge "+rec.Bridge {
		return []string{fmt.Sprintf("network: created on bridge %s, now on %s (tap %s)", rec.Bridge, now, rec.Tap)}
	}
	return nil
}

// sweepTaps removes this driver's taps that no VM entry names and that nothing holds
// open (QEMU holding a tap gives it a carrier), for a Drover killed between making a
// tap and writing down that it had. inUse holds the taps of every entry.
func (d *Driver) sweepTaps(links []netlink.Link, inUse map[string]bool) ([]string, error) {
	var removed []string
	var errs []error
	for _, l := range links {
		name := l.Attrs().Name
		if inUse[name] {
			continue
		}
		if l.Attrs().OperState == netlink.OperUp {
			continue
		}
		if err := removeTap(name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "tap "+name)
	}
	return removed, errors.Join(errs...)
}

// listOwnTaps lists this driver's taps.
func (d *Driver) listOwnTaps() ([]netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("sweep taps: %w", err)
	}
	var own []netlink.Link
	for _, l := range links {
		if l.Type() == "tuntap" && strings.HasPrefix(l.Attrs().Name, d.ownTapPrefix()) {
			own = append(own, l)
		}
	}
	return own, nil
}

// tapsInUse are the taps the state directory's entries name, or would: an entry that
// cannot be read may still be a VM's, so its name's tap stays too.
func (d *Driver) tapsInUse(entries []os.DirEntry) map[string]bool {
	inUse := map[string]bool{}
	for _, e := range entries {
		name, kind := classifyEntry(e.Name())
		if kind == notLeftover {
			continue
		}
		inUse[tapName(d.root, name)] = true
		if rec, err := readEntry(d.root, e.Name()); err == nil && rec.Tap != "" {
			inUse[rec.Tap] = true
		}
	}
	return inUse
}
