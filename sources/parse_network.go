package sources

import (
	"net/netip"
	"regexp"

	"gopkg.in/yaml.v3"
)

var networkFields = []string{"mode", "bridge", "network", "addresses", "prefix", "gateway", "dns"}

// maxDNS is as many name servers as a resolver uses (glibc's MAXNS).
const maxDNS = 3

// Names of host objects a guest is attached to. A bridge is a Linux interface name; a
// libvirt network name is kept to the same characters, so that neither can carry a
// path, a space or markup into the domain XML or a log line.
var (
	bridgeRE  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	networkRE = bridgeRE
)

func (p *parser) network(svc *block) Network {
	nw := Network{Mode: DefaultNetworkMode}
	f, ok := svc.get("network")
	if !ok {
		return nw
	}
	b, ok := p.mapping(f.val, "network", "network", networkFields)
	if !ok {
		return nw
	}
	modeNode := b.node
	if f, ok := b.get("mode"); ok {
		modeNode = f.val
		v, ok := p.oneOf(b, f, "mode", "user", "bridge", "network")
		if !ok {
			return nw
		}
		nw.Mode = v
	}
	for _, name := range []string{"bridge", "network"} {
		f, ok := b.get(name)
		var v string
		if ok {
			if v, ok = p.str(b, f, name); !ok {
				continue
			}
		}
		switch {
		case nw.Mode == name && v == "":
			p.errorf(modeNode, "network.%s is required with mode %s", name, name)
		case nw.Mode != name && ok:
			p.errorf(f.key, "network.%s is only allowed with mode %s, not %s", name, name, nw.Mode)
		case !ok:
		case name == "bridge":
			if p.hostName(f, "network.bridge", v, bridgeRE, MaxBridgeBytes) {
				nw.Bridge = v
			}
		default:
			if p.hostName(f, "network.network", v, networkRE, MaxNetworkBytes) {
				nw.Network = v
			}
		}
	}
	p.static(b, &nw)
	return nw
}

// static reads the static addressing of a bridge or libvirt network: the pool, the
// guest's prefix, its gateway and name servers. Without `addresses` the guest uses
// DHCP, and prefix, gateway and dns are the DHCP server's to hand out.
func (p *parser) static(b *block, nw *Network) {
	af, hasPool := b.get("addresses")
	if !hasPool {
		for _, name := range []string{"prefix", "gateway", "dns"} {
			if f, ok := b.get(name); ok {
				p.errorf(f.key, "network.%s is only allowed with network.addresses (static addressing); without it the guest uses DHCP", name)
			}
		}
		return
	}
	if nw.Mode == "user" {
		p.errorf(af.key, "network.addresses is only allowed with mode bridge or network, not user")
		return
	}
	v, ok := p.str(b, af, "addresses")
	if !ok {
		return
	}
	pool, err := ParsePool(v)
	if err != nil {
		p.errorf(af.val, "network.addresses: %v", err)
		return
	}
	if n := pool.Size(); n > MaxPoolSize {
		p.errorf(af.val, "network.addresses: %s holds %d addresses, more than the %d allowed", pool, n, MaxPoolSize)
		return
	}
	bits := 0
	if f, ok := b.get("prefix"); ok {
		if bits, ok = p.integer(b, f, "prefix", 1, 32); !ok {
			return
		}
	} else if pfx, err := netip.ParsePrefix(v); err == nil {
		bits = pfx.Bits()
	} else {
		p.errorf(b.node, "network.prefix is required with a range of addresses (the guest's prefix length, such as 24)")
		return
	}
	subnet := netip.PrefixFrom(pool.First, bits).Masked()
	if !subnet.Contains(pool.Last) {
		p.errorf(af.val, "network.addresses: %s is not inside one /%d (%s): every guest address must be in the guest's own subnet", pool, bits, subnet)
		return
	}
	if bits < 31 {
		first, last := prefixBounds(subnet)
		for _, a := range []netip.Addr{first, last} {
			if pool.Contains(a) {
				p.errorf(af.val, "network.addresses: %s holds %s, the %s address of %s, which no guest can use", pool, a, map[bool]string{true: "network", false: "broadcast"}[a == first], subnet)
				return
			}
		}
	}
	nw.Addresses, nw.Prefix = v, bits
	if f, ok := b.get("gateway"); ok {
		if gw, ok := p.address(b, f, "gateway"); ok {
			switch {
			case !subnet.Contains(gw):
				p.errorf(f.val, "network.gateway %s is not in the guests' subnet %s", gw, subnet)
			case pool.Contains(gw):
				p.errorf(f.val, "network.gateway %s is inside network.addresses %s: a guest could be given the gateway's address", gw, pool)
			default:
				nw.Gateway = gw.String()
			}
		}
	}
	if f, ok := b.get("dns"); ok {
		p.dns(b, f, nw)
	}
}

// address reads one IPv4 address.
func (p *parser) address(b *block, f field, name string) (netip.Addr, bool) {
	return p.addressAt(f.val, b.fieldPath(name))
}

func (p *parser) addressAt(n *yaml.Node, path string) (netip.Addr, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.errorf(n, "%s: want an IPv4 address, got %s", path, describe(n))
		return netip.Addr{}, false
	}
	a, err := parseV4(n.Value)
	if err != nil {
		p.errorf(n, "%s: want an IPv4 address, got %s", path, excerpt(n.Value))
		return netip.Addr{}, false
	}
	return a, true
}

func (p *parser) dns(b *block, f field, nw *Network) {
	n := deref(f.val)
	if n.Kind != yaml.SequenceNode {
		p.errorf(f.val, "%s: want a list of IPv4 addresses, got %s", b.fieldPath("dns"), describe(f.val))
		return
	}
	if len(n.Content) > maxDNS {
		p.errorf(f.val, "%s: %d name servers, more than the %d a resolver uses", b.fieldPath("dns"), len(n.Content), maxDNS)
		return
	}
	for _, item := range n.Content {
		if a, ok := p.addressAt(deref(item), b.fieldPath("dns")); ok {
			nw.DNS = append(nw.DNS, a.String())
		}
	}
}

// poolBudget checks that a static pool holds every VM a rollout of the service may
// run at once: twice the replicas under blue-green and canary (a canary goes on as
// blue-green once its canaries pass), replicas + max_surge when rolling.
func (p *parser) poolBudget(svc *block, s Service) {
	pool, ok := s.Network.Pool()
	if !ok {
		return
	}
	need := 2 * s.Replicas
	how := "2 × replicas under " + s.Update.Strategy
	if s.Update.Strategy == StrategyRolling {
		need = s.Replicas + s.Update.MaxSurge
		how = "replicas + max_surge when rolling"
	}
	if pool.Size() < need {
		at := svc.node
		if f, ok := svc.get("network"); ok {
			at = f.val
		}
		p.errorf(at, "network.addresses %s holds %d addresses, fewer than the %d a rollout needs (%s)", pool, pool.Size(), need, how)
	}
}

// hostName checks the name of a bridge or libvirt network.
func (p *parser) hostName(f field, path, v string, re *regexp.Regexp, maxBytes int) bool {
	if len(v) > maxBytes {
		p.errorf(f.val, "%s is %d bytes, more than the %d allowed: %s", path, len(v), maxBytes, excerpt(v))
		return false
	}
	if !re.MatchString(v) {
		p.errorf(f.val, "%s: want letters, digits, '_', '.' or '-' (not first), got %s", path, excerpt(v))
		return false
	}
	return true
}
