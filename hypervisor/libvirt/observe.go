package libvirt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"libvirt.org/go/libvirt"

	"github.com/drover-dev/drover/hypervisor"
)

var (
	// errNoMetadata: the domain has no Drover element, so it is not Drover's.
	errNoMetadata = errors.New("no drover metadata")
	// errBadMetadata: the domain has Drover's element but it cannot be read.
	errBadMetadata = errors.New("unreadable drover metadata")
)

// readMetadata fetches and parses Drover's element from a domain.
func readMetadata(dom *libvirt.Domain) (vmMetadata, hypervisor.Metadata, error) {
	raw, err := dom.GetMetadata(libvirt.DOMAIN_METADATA_ELEMENT, metadataNS, libvirt.DOMAIN_AFFECT_CURRENT)
	switch {
	case isVirErr(err, libvirt.ERR_NO_DOMAIN_METADATA):
		return vmMetadata{}, hypervisor.Metadata{}, errNoMetadata
	case isVirErr(err, libvirt.ERR_NO_DOMAIN):
		return vmMetadata{}, hypervisor.Metadata{}, hypervisor.ErrNotFound
	case err != nil:
		return vmMetadata{}, hypervisor.Metadata{}, fmt.Errorf("read metadata: %w", err)
	}
	m, meta, err := decodeMetadata(raw)
	if err != nil {
		return vmMetadata{}, hypervisor.Metadata{}, fmt.Errorf("%w: %w", errBadMetadata, err)
	}
	return m, meta, nil
}

// lookupManaged finds a domain Drover may act on. The caller frees it.
func (d *Driver) lookupManaged(ctx context.Context, name string) (*libvirt.Domain, vmMetadata, error) {
	conn, err := d.connection(ctx)
	if err != nil {
		return nil, vmMetadata{}, err
	}
	dom, err := conn.LookupDomainByName(name)
	if isVirErr(err, libvirt.ERR_NO_DOMAIN) {
		return nil, vmMetadata{}, hypervisor.ErrNotFound
	}
	if err != nil {
		return nil, vmMetadata{}, fmt.Errorf("look up domain: %w", err)
	}
	m, _, err := readMetadata(dom)
	switch {
	case err == nil:
		return dom, m, nil
	case errors.Is(err, errNoMetadata):
		err = hypervisor.ErrNotManaged
	case errors.Is(err, errBadMetadata):
		// Drover cannot know what such a domain owns, so it leaves it alone.
		err = fmt.Errorf("%w: %w", hypervisor.ErrNotManaged, err)
	}
	dom.Free()
	return nil, vmMetadata{}, err
}

// observe reads one domain as a VM.
func (d *Driver) observe(dom *libvirt.Domain) (hypervisor.VM, vmMetadata, error) {
	name, err := dom.GetName()
	if err != nil {
		return hypervisor.VM{}, vmMetadata{}, fmt.Errorf("domain name: %w", err)
	}
	m, meta, err := readMetadata(dom)
	if err != nil {
		return hypervisor.VM{}, vmMetadata{}, fmt.Errorf("domain %s: %w", name, err)
	}
	st, reason, err := dom.GetState()
	if isVirErr(err, libvirt.ERR_NO_DOMAIN) {
		return hypervisor.VM{}, vmMetadata{}, fmt.Errorf("domain %s: %w", name, hypervisor.ErrNotFound)
	}
	if err != nil {
		return hypervisor.VM{}, vmMetadata{}, fmt.Errorf("domain %s: state: %w", name, err)
	}
	vm := hypervisor.VM{Name: name, Meta: meta, State: mapState(st, reason)}
	vm.Drift, err = d.drift(dom, name, m, st != libvirt.DOMAIN_SHUTOFF)
	if isVirErr(err, libvirt.ERR_NO_DOMAIN) {
		return hypervisor.VM{}, vmMetadata{}, fmt.Errorf("domain %s: %w", name, hypervisor.ErrNotFound)
	}
	if err != nil {
		return hypervisor.VM{}, vmMetadata{}, fmt.Errorf("domain %s: %w", name, err)
	}
	vm.Address, vm.Port, vm.AddressSources = d.endpoint(dom, m, vm.State)
	if why := hypervisor.StaticAddressDrift(m.MAC, m.Address); why != "" && st != libvirt.DOMAIN_SHUTOFF && d.localHost() {
		vm.Drift = append(vm.Drift, why)
	}
	return vm, m, nil
}

func observeState(dom *libvirt.Domain) hypervisor.State {
	st, reason, err := dom.GetState()
	if err != nil {
		return hypervisor.StateUnknown
	}
	return mapState(st, reason)
}

func mapState(st libvirt.DomainState, reason int) hypervisor.State {
	switch st {
	case libvirt.DOMAIN_RUNNING, libvirt.DOMAIN_BLOCKED, libvirt.DOMAIN_SHUTDOWN:
		// SHUTDOWN is "being shut down": still running until it is off.
		return hypervisor.StateRunning
	case libvirt.DOMAIN_PAUSED:
		switch libvirt.DomainPausedReason(reason) {
		case libvirt.DOMAIN_PAUSED_STARTING_UP:
			return hypervisor.StateStarting
		case libvirt.DOMAIN_PAUSED_IOERROR:
			// A write failed (disk full under the overlay): alive, and a new VM
			// would hit the same disk.
			return hypervisor.StatePausedIOError
		}
		return hypervisor.StatePaused
	case libvirt.DOMAIN_PMSUSPENDED:
		return hypervisor.StatePaused
	case libvirt.DOMAIN_SHUTOFF:
		// on_crash=destroy turns a crash into shutoff with this reason.
		if libvirt.DomainShutoffReason(reason) == libvirt.DOMAIN_SHUTOFF_CRASHED {
			return hypervisor.StateCrashed
		}
		return hypervisor.StateShutoff
	case libvirt.DOMAIN_CRASHED:
		return hypervisor.StateCrashed
	default:
		return hypervisor.StateUnknown
	}
}

// endpoint is where the guest's service is reached: the forwarded loopback port for
// user networking; else the guest's static address, or, under DHCP, the address the
// first source that knows it reports, with the sources asked.
func (d *Driver) endpoint(dom *libvirt.Domain, m vmMetadata, st hypervisor.State) (string, int, []string) {
	if m.NetworkMode == hypervisor.NetworkUser {
		return "127.0.0.1", m.HostPort, nil
	}
	if a := (hypervisor.Network{Address: m.Address}).StaticAddress(); a != "" {
		return a, m.GuestPort, nil
	}
	addr, sources := d.guestAddress(dom, m, st == hypervisor.StateRunning)
	return addr, m.GuestPort, sources
}

// Address sources of a guest under DHCP, as named in errors.
const (
	sourceLeases = "libvirt's DHCP leases"
	sourceAgent  = "the guest agent"
)

// guestAddress asks, cheapest first: libvirt's own DHCP leases (libvirt networks), the
// host's neighbour table by the NIC's MAC (read by Drover: libvirt 9.0's ARP source
// fails with "virArpTableGet: wrong nlmsg len"; only when libvirtd is local), the guest
// agent. It returns the address (or "") and the sources it asked.
func (d *Driver) guestAddress(dom *libvirt.Domain, m vmMetadata, running bool) (string, []string) {
	var asked []string
	if m.NetworkMode == hypervisor.NetworkLibvirt {
		asked = append(asked, sourceLeases)
	}
	if m.MAC != "" && d.localHost() {
		asked = append(asked, hypervisor.SourceNeighbours)
	}
	asked = append(asked, sourceAgent)
	if !running {
		return "", asked
	}
	for _, src := range asked {
		var addr string
		var err error
		switch src {
		case sourceLeases, sourceAgent:
			kind := libvirt.DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE
			if src == sourceAgent {
				kind = libvirt.DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT
			}
			var ifaces []libvirt.DomainInterface
			if ifaces, err = dom.ListAllInterfaceAddresses(kind); err == nil {
				addr = pickAddress(ifaces, m.MAC)
			}
		case hypervisor.SourceNeighbours:
			addr, err = hypervisor.NeighbourAddress(m.MAC)
		}
		if err != nil {
			d.log.Debug("guest address not available from source", "source", src, "err", err)
			continue
		}
		if addr != "" {
			return addr, asked
		}
	}
	return "", asked
}

// localHost reports whether libvirtd runs on this host (no host in the URI), so that
// Drover's own view of the network (bridges, the neighbour table) is libvirt's too.
func (d *Driver) localHost() bool {
	u, err := url.Parse(d.uri)
	return err == nil && u.Host == "" && isQEMUURI(d.uri)
}

// pickAddress prefers IPv4 and skips loopback and link-local addresses, which the
// guest agent reports but nobody outside the guest can use.
func pickAddress(ifaces []libvirt.DomainInterface, mac string) string {
	var v6 string
	for _, iface := range ifaces {
		if mac != "" && iface.Hwaddr != "" && !strings.EqualFold(iface.Hwaddr, mac) {
			continue // another NIC, or the agent's loopback
		}
		for _, a := range iface.Addrs {
			ip := net.ParseIP(strings.TrimSpace(a.Addr))
			if ip == nil || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
				continue
			}
			if ip.To4() != nil {
				return ip.String()
			}
			if v6 == "" {
				v6 = ip.String()
			}
		}
	}
	return v6
}
