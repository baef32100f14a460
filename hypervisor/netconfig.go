package hypervisor

import (
	"fmt"
	"net/netip"
	"strings"
)

// StaticAddress is the guest's static address without its prefix ("198.18.0.10"),
// or "" under DHCP or user networking.
func (n Network) StaticAddress() string {
	pfx, err := netip.ParsePrefix(n.Address)
	if err != nil {
		return ""
	}
	return pfx.Addr().String()
}

// CloudInitNetworkConfig is the cloud-init network-config (version 2) that gives the
// guest its static address, matched by MAC so the guest's own name for the NIC does
// not matter. nil without static addressing.
func (n Network) CloudInitNetworkConfig() []byte {
	if n.Address == "" || n.MAC == "" {
		return nil
	}
	var b strings.Builder
	b.WriteString("version: 2\nethernets:\n  drover0:\n")
	fmt.Fprintf(&b, "    match:\n      macaddress: %q\n", n.MAC)
	b.WriteString("    set-name: eth0\n")
	b.WriteString("    dhcp4: false\n    dhcp6: false\n")
	fmt.Fprintf(&b, "    addresses: [%q]\n", n.Address)
	if n.Gateway != "" {
		fmt.Fprintf(&b, "    routes:\n      - to: 0.0.0.0/0\n        via: %q\n", n.Gateway)
	}
	if len(n.DNS) > 0 {
		quoted := make([]string, len(n.DNS))
		for i, d := range n.DNS {
			quoted[i] = fmt.Sprintf("%q", d)
		}
		fmt.Fprintf(&b, "    nameservers:\n      addresses: [%s]\n", strings.Join(quoted, ", "))
	}
	return []byte(b.String())
}

// KernelIPArg is the kernel's ip= parameter for the static address, the way a kernel
// boot (no cloud-init) is told its address: ip=<addr>::<gw>:<mask>::eth0:off. "" without
// static addressing.
func (n Network) KernelIPArg() string {
	pfx, err := netip.ParsePrefix(n.Address)
	if err != nil || !pfx.Addr().Is4() {
		return ""
	}
	bits := pfx.Bits()
	mask := ^uint32(0) << (32 - bits)
	if bits == 0 {
		mask = 0
	}
	m := netip.AddrFrom4([4]byte{byte(mask >> 24), byte(mask >> 16), byte(mask >> 8), byte(mask)})
	return fmt.Sprintf("ip=%s::%s:%s::eth0:off", pfx.Addr(), n.Gateway, m)
}
