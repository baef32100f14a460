package libvirt

import (
	"fmt"

	"libvirt.org/go/libvirt"

	"github.com/drover-dev/drover/hypervisor"
)

// checkAttachment refuses, before anything is made, a bridge or libvirt network that
// does not exist: libvirt would only say so when the domain starts, in its own words.
// A bridge is looked up in Drover's network namespace, so only when libvirtd is local
// (no host in the URI); a network is asked of libvirt.
func (d *Driver) checkAttachment(conn *libvirt.Connect, nw hypervisor.Network) error {
	switch nw.Mode {
	case hypervisor.NetworkBridge:
		if d.localHost() {
			return hypervisor.CheckBridge(nw.Bridge)
		}
	case hypervisor.NetworkLibvirt:
		net, err := conn.LookupNetworkByName(nw.Network)
		if isVirErr(err, libvirt.ERR_NO_NETWORK) {
			return fmt.Errorf("libvirt network %q: %w: define it (virsh net-define) or fix network.network", nw.Network, hypervisor.ErrNoNetwork)
		}
		if err != nil {
			return fmt.Errorf("libvirt network %q: %w", nw.Network, err)
		}
		defer net.Free()
		if active, err := net.IsActive(); err == nil && !active {
			return fmt.Errorf("libvirt network %q: %w: it is defined but not started (virsh net-start %s)", nw.Network, hypervisor.ErrNoNetwork, nw.Network)
		}
	}
	return nil
}
