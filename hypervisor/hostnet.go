package hypervisor

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
)

// ErrNoBridge: the host bridge a spec names does not exist (or is not a bridge) in the
// network namespace Drover runs in. Creating the bridge fixes it; nothing is created
// meanwhile.
var ErrNoBridge = errors.New("host bridge not found")

// ErrNoNetwork: the libvirt network a spec names is not defined, or not started.
var ErrNoNetwork = errors.New("libvirt network not found")

// CheckBridge reports whether name is a bridge on this host.
func CheckBridge(name string) error {
	link, err := netlink.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		return fmt.Errorf("bridge %q: %w: create it (ip link add %s type bridge) or fix network.bridge", name, ErrNoBridge, name)
	case err != nil:
		return fmt.Errorf("bridge %q: %w", name, err)
	case link.Type() != "bridge":
		return fmt.Errorf("bridge %q: %w: it is a %s interface, not a bridge", name, ErrNoBridge, link.Type())
	}
	return nil
}

// SourceNeighbours names the host's neighbour table as an address source.
const SourceNeighbours = "the host's neighbour table"

// NeighbourAddress is the IPv4 address the host's neighbour (ARP) table holds for mac,
// the freshest first, or "" when it holds none. It is read over netlink by Drover
// itself: libvirt 9.0's own ARP source fails on current kernels ("virArpTableGet:
// wrong nlmsg len").
func NeighbourAddress(mac string) (string, error) {
	all, err := neighbourAddresses(mac)
	if err != nil || len(all) == 0 {
		return "", err
	}
	return all[0], nil
}

// neighbourAddresses are the usable IPv4 entries for mac, reachable ones first.
func neighbourAddresses(mac string) ([]string, error) {
	want, err := net.ParseMAC(mac)
	if err != nil {
		return nil, fmt.Errorf("neighbour table: mac %q: %w", mac, err)
	}
	neighs, err := netlink.NeighList(0, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("neighbour table: %w", err)
	}
	var fresh, stale []string
	for _, n := range neighs {
		if !strings.EqualFold(n.HardwareAddr.String(), want.String()) || n.IP.To4() == nil ||
			n.IP.IsLinkLocalUnicast() || n.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE) != 0 {
			continue
		}
		if n.State&(netlink.NUD_REACHABLE|netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0 {
			fresh = append(fresh, n.IP.String())
		} else {
			stale = append(stale, n.IP.String())
		}
	}
	return append(fresh, stale...), nil
}

// StaticAddressDrift compares a static address a VM was created with to where the host
// last saw its MAC: a guest that configured itself another address answers there, not
// at the address Consul has. "" when they agree or the host has not seen the MAC.
func StaticAddressDrift(mac, address string) string {
	want := Network{Address: address}.StaticAddress()
	if want == "" || mac == "" {
		return ""
	}
	seen, err := neighbourAddresses(mac)
	if err != nil || len(seen) == 0 || slices.Contains(seen, want) {
		return ""
	}
	return fmt.Sprintf("address: created with %s, the guest (mac %s) now answers at %s", want, mac, strings.Join(seen, ", "))
}
