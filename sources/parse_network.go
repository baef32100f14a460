package sources

import "regexp"

var networkFields = []string{"mode", "bridge", "network"}

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
	return nw
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
